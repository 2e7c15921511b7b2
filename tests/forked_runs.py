"""A run starter for kill tests: imports the model layer once, then forks one child per run.

Started as `python tests/forked_runs.py`, it reads one JSON line per run from stdin
(`{"root", "workspace", "api_base", "model", "env"}`), forks a child that runs the experience,
prints the child's pid, waits for it (killed or not) and prints its exit status. A fresh
interpreter pays the ~2 s import of litellm once instead of once per run; this process has
no other thread, so forking it is safe.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def child(job: dict) -> int:
    from evolve.runtime.run import RunOptions, start_run
    from evolve.store.workspace import Workspace

    os.environ.update(job.get("env", {}))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    options = RunOptions(model=job["model"], api_base=job["api_base"])
    return start_run(job["root"], Workspace(Path(job["workspace"])), options).exit_code


def main() -> None:
    from evolve.llm.client import LiteLLMModel
    from evolve.runtime import run  # noqa: F401  (imported before forking, like the model layer)

    LiteLLMModel(None, None).prepare()
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                code = child(job)
            finally:
                os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(status, flush=True)


if __name__ == "__main__":
    main()
