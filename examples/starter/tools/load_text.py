"""Read a text file that ships with the experience."""

from pathlib import Path


def run(inputs):
    path = Path(__file__).parent.parent / inputs["path"]
    return {"state_delta": {"text": path.read_text(encoding="utf-8")}}
