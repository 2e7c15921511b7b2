"""Count the words of one paragraph (runs once per item of $.paragraphs)."""


def count(inputs):
    words = inputs["$item"].split()
    return {
        "state_delta": {"counts": [{"paragraph": inputs["$index"], "words": len(words)}]},
        "metrics": {"words": len(words)},
    }
