"""Load the branch diff under review, and the list of files it touches."""

import re
from pathlib import Path


def run(inputs):
    text = (Path(__file__).parent.parent / inputs["path"]).read_text(encoding="utf-8")
    files = re.findall(r"^diff --git a/(\S+) b/", text, flags=re.MULTILINE)
    return {"state_delta": {"diff": text, "files": files}, "metrics": {"files": len(files)}}
