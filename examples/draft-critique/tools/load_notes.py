"""Read the incident notes that ship with the experience."""

from pathlib import Path


def run(inputs):
    path = Path(__file__).parent.parent / inputs["path"]
    return {"state_delta": {"notes": path.read_text(encoding="utf-8")}}
