"""Count the words of one paragraph (this node runs once per item of $.paragraphs)."""


def run(inputs):
    return {"state_delta": {"counts": [len(inputs["$item"].split())]}}
