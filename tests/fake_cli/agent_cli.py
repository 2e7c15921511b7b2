#!/usr/bin/env python3
"""A stand-in for an agentic CLI (claude, codex, gemini, or any command) in tests.

It logs its argv and cwd to $FAKE_CLI_LOG, finds the prompt where the real CLI takes it, and acts
on a `MODE:...` word in the prompt: text, json, badjson (bad JSON unless the prompt carries a
repair request), fail (exit 3), sleep (a background child, then a long sleep), write (changes
files in its working directory).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

name = Path(sys.argv[0]).name
args = sys.argv[1:]
if name in ("claude", "gemini"):
    prompt = args[args.index("-p") + 1]
elif name == "codex":
    prompt = args[-1]
else:
    prompt = sys.stdin.read()

if os.environ.get("FAKE_CLI_LOG"):
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps({"name": name, "argv": args, "cwd": os.getcwd(), "prompt": prompt}))
        log.write("\n")

mode = prompt.split("MODE:", 1)[1].split()[0] if "MODE:" in prompt else "text"
reply = f"hello from {name}"
if mode == "json":
    reply = json.dumps({"answer": f"{name} says yes"})
elif mode == "badjson":
    repaired = "did not match the schema" in prompt
    reply = json.dumps({"answer": "fixed"}) if repaired else json.dumps({"answer": 42})
elif mode == "fail":
    print("something went wrong\nboom: the agent gave up", file=sys.stderr)
    sys.exit(3)
elif mode == "sleep":
    child = subprocess.Popen(["sleep", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    Path(os.environ["FAKE_CLI_PIDFILE"]).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(60)
elif mode == "write":
    Path("new.txt").write_text("created\n")
    Path("existing.txt").write_text("changed\n")
    if Path("doomed.txt").exists():
        Path("doomed.txt").unlink()
    reply = "edited three files"

if name == "claude":
    print(json.dumps({"type": "result", "is_error": False, "result": reply}))
else:
    print(reply)
