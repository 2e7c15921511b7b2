"""Read the text and split it into paragraphs (blank lines between them)."""

from pathlib import Path


def run(inputs):
    text = (Path(__file__).parent.parent / inputs["path"]).read_text(encoding="utf-8")
    return {"state_delta": {"paragraphs": [p.strip() for p in text.split("\n\n") if p.strip()]}}
