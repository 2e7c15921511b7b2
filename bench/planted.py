"""Planted flaws, held out: fifteen small experiences, each with one known flaw (or none), run
offline, `evolve propose --verify --no-llm`, every emitted diff applied with real `git apply` and
validated, the top one kept and the experience run again.

The flaws are not the ones in tests/: a censored timeout, a timeout under a mixed fan-out, too
few attempts, HTTP errors without retry (httpx, urllib), a rate-limit window that needs a longer
backoff, a rate-limited fan-out, a waiting fan-out at concurrency 1, replies cut at max_tokens
(with and without a finish reason), a suite whose slow cases time out; and cases that must get
nothing: a healthy chain, a CPU-bound fan-out, a schema violation the model repeats word for word
(only a schema or prompt change fixes it: the model advisor's job), and a frozen node that would
otherwise be proposed.

Agent nodes talk to a stand-in OpenAI-compatible server on 127.0.0.1 (no network): it cuts its
reply when `max_tokens` is small, as a provider does.

Prints, per case, the top proposal and whether the next run improved; then the figures:
  - emitted diffs that apply (`git apply --check`) and validate (`evolve validate`);
  - runtime-flaw cases whose top proposal improved the next run (status, failures, score, or
    duration: the same comparison `--verify` makes, on a real re-run after `git apply`);
  - medium/high proposals on healthy runs;
  - proposals touching a frozen node.
Targets: 100%, >= 85%, 0, 0.

Usage: python -m bench.planted [--only NAME] [--keep DIR]   (from the project root)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from bench.bigrun import evolve_command
from evolve.advisor.verify import Health, health_of, judge, pooled
from evolve.store.log import read_events
from evolve.store.queries import RunQueries, open_store
from evolve.store.workspace import Workspace
from evolve.view import fold

MODEL = "openai/stand-in"


@dataclass
class Case:
    name: str
    kind: str  # runtime | healthy | model (only the model advisor can fix it) | frozen
    spec: str
    files: dict[str, str] = field(default_factory=dict)
    suite: bool = False
    model: bool = False  # agent nodes: runs talk to the stand-in server
    frozen: tuple[str, ...] = ()


def header(name: str, state: str = "{}") -> str:
    return f"name: {name}\nversion: 0.1.0\nstate:\n  schema: {state}\ngraph:\n  nodes:\n"


ASYNC_SLEEP = """\
import asyncio

async def run(inputs):
    await asyncio.sleep(inputs.get("s", 0) or inputs.get("$item", 0) / 1000)
"""

RESETS_FIVE_TIMES = """\
CALLS = []

def run(inputs):
    CALLS.append(1)
    if len(CALLS) <= 5:  # the mirror drops the first five connections of a process
        raise ConnectionResetError(104, "Connection reset by peer")
    return {"state_delta": {"synced": True}}
"""

HTTPX_FLAKY = """\
import httpx

SEEN = set()

def run(inputs):
    i = inputs["$index"]
    if i in (1, 4) and i not in SEEN:
        SEEN.add(i)
        raise httpx.ConnectError("[Errno 111] Connection refused")
    return {"state_delta": {"pages": [i]}}
"""

URLLIB_503 = """\
import urllib.error

CALLS = []

def run(inputs):
    CALLS.append(1)
    if len(CALLS) == 1:
        raise urllib.error.HTTPError("http://quotes.test/", 503, "Service Unavailable", {}, None)
    return {"state_delta": {"quote": 42}}
"""

RATE_WINDOW = """\
import time

FIRST = []

class QuotaExceeded(Exception):
    def __init__(self):
        super().__init__("quota exceeded, try later")
        self.response = type("Response", (), {"status_code": 429})()

def run(inputs):
    now = time.monotonic()
    FIRST.append(now)
    if now - FIRST[0] < 0.6:  # the provider's window: 600 ms from the first call
        raise QuotaExceeded()
    return {"state_delta": {"posted": True}}
"""

TWO_AT_ONCE = """\
import threading
import time

LOCK = threading.Lock()
BUSY = [0]

class TooMany(Exception):
    status = 429

def run(inputs):
    with LOCK:
        BUSY[0] += 1
        now = BUSY[0]
    try:
        if now > 2:
            raise TooMany("429: two requests at a time")
        time.sleep(0.1)
    finally:
        with LOCK:
            BUSY[0] -= 1
    return {}
"""

CPU_CRUNCH = """\
def run(inputs):
    total = 0
    for n in range(600_000):
        total += n * n
    return {}
"""

SLOW_FOR_BIG_N = """\
import time

def run(inputs):
    n = inputs["_state"]["n"]
    time.sleep(0.05 + n * 0.06)  # n >= 4 needs longer than the limit
    return {"state_delta": {"double": 2 * n}}
"""

FAST = "def run(inputs):\n    return {}\n"


def agent_node(node_id: str, schema: str, max_tokens: int | None = None) -> str:
    extra = f"      max_tokens: {max_tokens}\n" if max_tokens else ""
    return (
        f"    - id: {node_id}\n      kind: agent\n      prompt: prompts/{node_id}.md\n"
        f"      writes: [{schema.split(':')[0]}]\n      on_error: {{policy: skip}}\n{extra}"
        f"      schema:\n        type: object\n        required: [{schema.split(':')[0]}]\n"
        f"        properties: {{{schema}}}\n"
    )


CASES = [
    Case(
        "timeout-censored",
        "runtime",
        header("fetch-report", "{report: {type: string}}")
        + "    - {id: fetch, kind: tool, impl: tools/sleep.py, args: {s: 0.6}, timeout_ms: 250,"
        " on_error: {policy: skip}}\n",
        {"tools/sleep.py": ASYNC_SLEEP},
    ),
    Case(
        "timeout-mixed-fan-out",
        "runtime",
        header("thumbnails", "{sizes: {type: array, default: [50, 80, 300, 60, 320]}}")
        + "    - {id: render, kind: tool, impl: tools/sleep.py, timeout_ms: 200,"
        " for_each: {source: $.sizes}, on_error: {policy: skip}}\n",
        {"tools/sleep.py": ASYNC_SLEEP},
    ),
    Case(
        "too-few-attempts",
        "runtime",
        header("mirror-sync", "{synced: {type: boolean, default: false}}")
        + "    - id: sync\n      kind: tool\n      impl: tools/sync.py\n      writes: [synced]\n"
        "      on_error: {policy: retry, attempts: 3, base_ms: 20, then: skip}\n",
        {"tools/sync.py": RESETS_FIVE_TIMES},
    ),
    Case(
        "httpx-errors-without-retry",
        "runtime",
        header(
            "crawl",
            "{urls: {type: array, default: [0, 1, 2, 3, 4, 5]}, "
            "pages: {type: array, merge: array_append, default: []}}",
        )
        + "    - {id: crawl, kind: tool, impl: tools/crawl.py, writes: [pages],"
        " for_each: {source: $.urls}, on_error: {policy: skip}}\n",
        {"tools/crawl.py": HTTPX_FLAKY},
    ),
    Case(
        "http-503-fails-the-run",
        "runtime",
        header("quote", "{quote: {type: integer, default: 0}}")
        + "    - {id: quote, kind: tool, impl: tools/quote.py, writes: [quote]}\n"
        "    - {id: after, kind: tool, impl: tools/fast.py, reads: [quote]}\n"
        "  edges:\n    - {from: quote, to: after}\n",
        {"tools/quote.py": URLLIB_503, "tools/fast.py": FAST},
    ),
    Case(
        "rate-window-needs-backoff",
        "runtime",
        header("post", "{posted: {type: boolean, default: false}}")
        + "    - id: post\n      kind: tool\n      impl: tools/post.py\n      writes: [posted]\n"
        "      on_error: {policy: retry, attempts: 3, base_ms: 30, then: skip}\n",
        {"tools/post.py": RATE_WINDOW},
    ),
    Case(
        "rate-limited-fan-out",
        "runtime",
        header("lookup", "{ids: {type: array, default: [1, 2, 3, 4, 5, 6, 7, 8]}}")
        + "    - id: lookup\n      kind: tool\n      impl: tools/lookup.py\n"
        "      for_each: {source: $.ids, concurrency: 4}\n"
        "      on_error: {policy: retry, attempts: 2, base_ms: 10, then: skip}\n",
        {"tools/lookup.py": TWO_AT_ONCE},
    ),
    Case(
        "waiting-fan-out",
        "runtime",
        header("ping", "{hosts: {type: array, default: " + json.dumps([100] * 16) + "}}")
        + "    - {id: ping, kind: tool, impl: tools/sleep.py,"
        " for_each: {source: $.hosts, concurrency: 1}}\n",
        {"tools/sleep.py": ASYNC_SLEEP},
    ),
    Case(
        "max-tokens-cut",
        "runtime",
        header("summarise", "{summary: {type: string}}")
        + agent_node("summarise", "summary: {type: string}", 24),
        {"prompts/summarise.md": "[cut] Summarise the quarter in one sentence."},
        model=True,
    ),
    Case(
        "json-cut-without-a-reason",
        "runtime",
        header("classify", "{label: {type: string}}")
        + agent_node("classify", "label: {type: string}", 24),
        {"prompts/classify.md": "[trunc] Label this ticket."},
        model=True,
    ),
    Case(
        "schema-violation-repeated",
        "model",
        header("grade", "{grade: {type: string}}")
        + agent_node("grade", "grade: {enum: [pass, fail]}"),
        {"prompts/grade.md": "[maybe] Grade the essay: pass or fail."},
        model=True,
    ),
    Case(
        "healthy-chain",
        "healthy",
        header("chain") + "    - {id: a, kind: tool, impl: tools/sleep.py, args: {s: 0.02}}\n"
        "    - {id: b, kind: tool, impl: tools/sleep.py, args: {s: 0.02}}\n"
        "  edges:\n    - {from: a, to: b}\n",
        {"tools/sleep.py": ASYNC_SLEEP},
    ),
    Case(
        "healthy-cpu-fan-out",
        "healthy",
        header("crunch", "{chunks: {type: array, default: [0, 0, 0, 0, 0, 0, 0, 0]}}")
        + "    - {id: crunch, kind: tool, impl: tools/crunch.py,"
        " for_each: {source: $.chunks, concurrency: 1}}\n",
        {"tools/crunch.py": CPU_CRUNCH},
    ),
    Case(
        "frozen-tight-timeout",
        "frozen",
        header(
            "legacy",
            "{pages: {type: array, merge: array_append, default: []}, "
            "urls: {type: array, default: [0, 1, 2, 3, 4, 5]}}",
        )
        + "    - {id: legacy, kind: tool, impl: tools/sleep.py, args: {s: 0.3}, timeout_ms: 100,"
        " frozen: true, on_error: {policy: skip}}\n"
        "    - {id: crawl, kind: tool, impl: tools/crawl.py, writes: [pages],"
        " for_each: {source: $.urls}, on_error: {policy: skip}}\n",
        {"tools/sleep.py": ASYNC_SLEEP, "tools/crawl.py": HTTPX_FLAKY},
        frozen=("legacy",),
    ),
    Case(
        "suite-slow-cases",
        "runtime",
        header("doubler", "{n: {type: integer, default: 0}, double: {type: integer, default: 0}}")
        + "    - {id: double, kind: tool, impl: tools/double.py, reads: [n], writes: [double],"
        " timeout_ms: 250, on_error: {policy: skip}}\n"
        "evals:\n  - {name: exact, expr: '$.double == $case.expect.double'}\n"
        "cases: {source: data/cases.jsonl}\n",
        {
            "tools/double.py": SLOW_FOR_BIG_N,
            "data/cases.jsonl": "".join(
                json.dumps({"id": f"n{n}", "args": {"n": n}, "expect": {"double": 2 * n}}) + "\n"
                for n in (1, 2, 4, 5)
            ),
        },
        suite=True,
    ),
]


# -- the stand-in model server -------------------------------------------------------------------


def reply_for(body: dict[str, Any]) -> tuple[str, str]:
    """(content, finish_reason) for a chat request, as a provider would answer it."""
    text = json.dumps(body.get("messages", []))
    small = (body.get("max_tokens") or body.get("max_completion_tokens") or 4096) < 40
    if "[cut]" in text:
        if small:
            return '{"summary": "Revenue grew while costs', "length"
        return '{"summary": "Revenue grew while costs fell."}', "stop"
    if "[trunc]" in text:
        if small:
            return '{"label": "billing-and-acc', "stop"  # a server that does not say why
        return '{"label": "billing"}', "stop"
    if "[maybe]" in text:
        return '{"grade": "maybe"}', "stop"
    return "{}", "stop"


class StandIn:
    """An OpenAI-compatible chat server on 127.0.0.1 answering with `reply_for`."""

    def __enter__(self) -> StandIn:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                content, reason = reply_for(body)
                data = json.dumps(
                    {
                        "id": "chatcmpl-stand-in",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "stand-in"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": reason,
                            }
                        ],
                        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- one case ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    proposals: list[dict[str, Any]] = field(default_factory=list)
    diffs_ok: int = 0
    diff_failures: list[str] = field(default_factory=list)
    frozen_touches: list[str] = field(default_factory=list)
    before: Health | None = None
    after: Health | None = None
    improved: bool | None = None  # runtime cases: whether the top proposal improved the run

    @property
    def loud(self) -> list[dict[str, Any]]:
        return [p for p in self.proposals if p["confidence"] in ("medium", "high")]


def git(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, text=True)


def evolve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*evolve_command(), *args], env=env, capture_output=True, text=True)


def run_once(case: Case, exp: Path, env: dict[str, str], model: list[str]) -> str:
    """Run the experience (or its suite) once; the run's (or suite's) id."""
    command = "eval" if case.suite else "run"
    made = evolve([command, str(exp), "--json", *model], env)
    if not made.stdout.strip():
        raise SystemExit(f"{case.name}: evolve {command} printed nothing: {made.stderr[-500:]}")
    data = json.loads(made.stdout)
    return data.get("suite_id") or data.get("run_id") or data["id"]


def health(workspace: Workspace, ref: str) -> Health:
    store = open_store(workspace)
    try:
        queries = RunQueries(store)
        row = queries.resolve(ref)
        rows = queries.children(row["id"]) if row.get("kind") == "suite" else [row]
    finally:
        store.close()
    return pooled(
        [
            health_of(fold(read_events(workspace.log_path(r["id"])), None), r.get("case_id"))
            for r in rows
        ]
    )


def frozen_nodes(spec_text: str, frozen: tuple[str, ...]) -> dict[str, Any]:
    nodes = (yaml.safe_load(spec_text).get("graph") or {}).get("nodes") or []
    return {n["id"]: n for n in nodes if n.get("id") in frozen}


def check_diffs(outcome: Outcome, repo: Path, exp: Path, env: dict[str, str]) -> None:
    """Every emitted diff: applies, validates, and leaves frozen nodes (and their files) alone."""
    spec_before = (exp / "experience.yaml").read_text()
    frozen = frozen_nodes(spec_before, outcome.case.frozen)
    frozen_files = {f"{exp.name}/{n['impl']}" for n in frozen.values()}
    for i, proposal in enumerate(outcome.proposals, start=1):
        diff = proposal["diff"]
        checked = git(repo, "apply", "--check", stdin=diff)
        if checked.returncode != 0:
            outcome.diff_failures.append(f"{i}: git apply --check: {checked.stderr.strip()}")
            continue
        git(repo, "apply", stdin=diff)
        valid = evolve(["validate", str(exp)], env)
        if valid.returncode != 0:
            outcome.diff_failures.append(f"{i}: validate: {valid.stdout}{valid.stderr}".strip())
        else:
            outcome.diffs_ok += 1
        after = frozen_nodes((exp / "experience.yaml").read_text(), outcome.case.frozen)
        touched = [n for n in frozen if frozen[n] != after.get(n)]
        touched += [f for f in frozen_files if f"a/{f}" in diff or f"b/{f}" in diff]
        if touched:
            outcome.frozen_touches.append(f"{i}: {proposal['title']} ({', '.join(touched)})")
        git(repo, "checkout", "--", ".")
        git(repo, "clean", "-fdq")


def run_case(case: Case, root: Path, server: StandIn) -> Outcome:
    repo = root / case.name
    exp = repo / case.name
    exp.mkdir(parents=True)
    (exp / "experience.yaml").write_text(case.spec)
    for name, text in case.files.items():
        (exp / name).parent.mkdir(parents=True, exist_ok=True)
        (exp / name).write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "planted")
    workspace = Workspace(root / f"{case.name}.ws")
    env = {**os.environ, "EVOLVE_WORKSPACE": str(workspace.root), "OPENAI_API_KEY": "sk-stand-in"}
    model = ["--model", MODEL, "--api-base", server.base] if case.model else []
    outcome = Outcome(case)
    first = run_once(case, exp, env, model)
    outcome.before = health(workspace, first)
    made = evolve(["propose", first, "--verify", "--no-llm", "--json", *model], env)
    if made.returncode != 0:
        raise SystemExit(f"{case.name}: evolve propose failed: {made.stderr[-800:]}")
    outcome.proposals = json.loads(made.stdout)["proposals"]
    check_diffs(outcome, repo, exp, env)
    if case.kind == "runtime":
        top = outcome.proposals[0]["diff"] if outcome.proposals else None
        outcome.improved = False
        if top is not None and git(repo, "apply", stdin=top).returncode == 0:
            again = run_once(case, exp, env, model)
            outcome.after = health(workspace, again)
            outcome.improved = judge(outcome.before, outcome.after)[0] == "better"
    return outcome


def describe(h: Health | None) -> str:
    if h is None:
        return "-"
    score = f", score {h.score:.2f}" if h.score is not None else ""
    return f"{h.status}, problems {h.problems}, {h.duration_ms} ms{score}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the case with this name")
    parser.add_argument("--keep", type=Path, help="build the cases here and keep them")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or c.name == args.only]
    root = args.keep or Path(tempfile.mkdtemp(prefix="evolve-planted-"))
    root.mkdir(parents=True, exist_ok=True)
    outcomes = []
    try:
        with StandIn() as server:
            for case in cases:
                outcome = run_case(case, root, server)
                outcomes.append(outcome)
                report(outcome)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    summary(outcomes)


def report(o: Outcome) -> None:
    top = o.proposals[0] if o.proposals else None
    print(f"\n{o.case.name} ({o.case.kind}): {len(o.proposals)} proposals")
    if top is not None:
        print(f"  top: {top['title']} ({top['confidence']})")
        line = (top.get("verification") or {}).get("line")
        if line:
            print(f"  {line}")
    print(f"  before: {describe(o.before)}")
    if o.improved is not None:
        print(f"  after:  {describe(o.after)} -> {'improved' if o.improved else 'NOT improved'}")
    for failure in o.diff_failures:
        print(f"  diff failed: {failure}")
    for touch in o.frozen_touches:
        print(f"  touches a frozen node: {touch}")
    if o.case.kind in ("healthy", "model"):
        for p in o.loud:
            print(f"  {p['confidence']} proposal on a run it should leave alone: {p['title']}")


def summary(outcomes: list[Outcome]) -> None:
    emitted = sum(len(o.proposals) for o in outcomes)
    applied = sum(o.diffs_ok for o in outcomes)
    runtime = [o for o in outcomes if o.case.kind == "runtime"]
    improved = sum(bool(o.improved) for o in runtime)
    healthy = [o for o in outcomes if o.case.kind == "healthy"]
    loud = sum(len(o.loud) for o in healthy)
    model = [o for o in outcomes if o.case.kind == "model"]
    frozen = sum(len(o.frozen_touches) for o in outcomes)
    share = applied / emitted if emitted else 1.0
    rate = improved / len(runtime) if runtime else 0.0
    print("\n-- figures " + "-" * 60)
    print(
        f"emitted diffs that apply and validate: {applied}/{emitted} ({share:.0%})"
        f"   target 100%  {met(applied == emitted)}"
    )
    print(
        f"runtime-flaw cases whose top proposal improved the next run: {improved}/{len(runtime)} "
        f"({rate:.0%})   target >= 85%  {met(rate >= 0.85)}"
    )
    print(
        f"medium/high proposals on healthy runs: {loud} (over {len(healthy)} runs)"
        f"   target 0  {met(loud == 0)}"
    )
    print(
        "medium/high proposals on flaws only the model advisor can fix: "
        f"{sum(len(o.loud) for o in model)} (over {len(model)} runs)"
    )
    print(f"proposals touching a frozen node: {frozen}   target 0  {met(frozen == 0)}")


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


if __name__ == "__main__":
    main()
