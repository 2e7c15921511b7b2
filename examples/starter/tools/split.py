"""Split the text into non-empty paragraphs."""


def run(inputs):
    text = inputs["_state"]["text"]
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return {"state_delta": {"paragraphs": paragraphs}}
