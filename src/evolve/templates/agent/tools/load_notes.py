"""Read the notes to summarise: one paragraph each, blank lines between them."""

from pathlib import Path


def run(inputs):
    text = (Path(__file__).parent.parent / inputs["path"]).read_text(encoding="utf-8")
    notes = [p.strip() for p in text.split("\n\n") if p.strip()]
    return {"state_delta": {"notes": notes}}
