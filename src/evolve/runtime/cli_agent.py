"""cli-agent nodes: a step delegated to an agentic coding CLI (Claude Code, Codex, Gemini, any).

The prompt file is rendered as for agent nodes; the CLI runs in the node's `workdir` with an
explicit argv (never a shell), its own process group, and no stdin but the prompt (for `command`
CLIs, which read it from stdin). When the attempt times out or is cancelled, the whole process
group is killed, so nothing the CLI started outlives it. The call (stdout, stderr tail, exit code,
files changed) goes through the run's `CallRecorder`, so `--record` keeps it and `--offline`
replays it without the CLI installed. Files created, modified or deleted in `workdir` are listed
in the node's `cli.call` event.

Output: `text` sends stdout (a provider's reply text) to the node's single `writes` field; `json`
parses it as a JSON object whose keys are state fields, checked against `schema` with one repair
turn (the CLI runs again with the problems), as for agent nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve.events import CliCall, SchemaInvalid
from evolve.llm.replies import REPAIR_TURN, parse_json_object, repair_text
from evolve.runtime.agent import SCHEMA_REPAIR_ASK, SCHEMA_REPAIR_HEADING, json_instruction
from evolve.runtime.attempt import Attempt, AttemptError
from evolve.runtime.recording import CallRecorder
from evolve.runtime.validation import errors as schema_errors
from evolve.spec.expressions import MISSING, resolve_path
from evolve.spec.model import Node
from evolve.spec.templates import TemplateError, render

STDERR_TAIL = 2000  # characters of stderr kept in the cassette and shown in an error
SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv"}


# Failures the same call would meet again: a command that is not installed, a bad prompt.
_PERMANENT = ("missing_runtime", "template_error")


def cli_error(message: str, error_type: str) -> AttemptError:
    """A cli-agent attempt that failed."""
    return AttemptError(message, error_type, retryable=error_type not in _PERMANENT)


@dataclass(frozen=True)
class Provider:
    executable: str
    argv: Callable[[str, str | None, list[str]], list[str]]  # (prompt, model, extra) -> argv
    reply: Callable[[str], str]  # stdout -> the reply text


def _claude_reply(stdout: str) -> str:
    """`claude -p --output-format json` prints an envelope whose `result` is the reply."""
    try:
        envelope = json.loads(stdout)
    except ValueError:
        return stdout
    if not isinstance(envelope, dict) or "result" not in envelope:
        return stdout
    if envelope.get("is_error"):
        raise cli_error(f"claude reported an error: {envelope.get('result')}", "cli_failed")
    return str(envelope["result"])


PROVIDERS: dict[str, Provider] = {
    "claude-code": Provider(
        "claude",
        lambda prompt, model, extra: [
            "claude",
            "-p",
            prompt,
            "--output-format",
            "json",
            *(["--model", model] if model else []),
            *extra,
        ],
        _claude_reply,
    ),
    "codex": Provider(
        "codex",
        lambda prompt, model, extra: [
            "codex",
            "exec",
            "--skip-git-repo-check",
            *(["--model", model] if model else []),
            *extra,
            prompt,
        ],
        str,
    ),
    "gemini": Provider(
        "gemini",
        lambda prompt, model, extra: [
            "gemini",
            "-p",
            prompt,
            *(["-m", model] if model else []),
            *extra,
        ],
        str,
    ),
}


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    stdin: str | None  # the prompt, for `command` CLIs
    cwd: Path
    env: dict[str, str]

    def request(self, node: Node, workdir_as_given: str) -> dict[str, Any]:
        """What decides the answer, for the cassette key (the prompt is inside argv or stdin)."""
        return {
            "argv": self.argv,
            "stdin": self.stdin,
            "workdir": workdir_as_given,
            "output_format": node.cli.output_format if node.cli else "text",
        }


def build_invocation(node: Node, prompt: str, cwd: Path) -> Invocation:
    cli = node.cli
    assert cli is not None
    env = dict(os.environ)
    if cli.provider:
        argv = PROVIDERS[cli.provider].argv(prompt, node.model, list(cli.extra_args))
        return Invocation(argv, None, cwd, env)
    if node.model:
        env["EVOLVE_MODEL"] = node.model
    return Invocation([*cli.command, *cli.extra_args], prompt, cwd, env)


def resolve_workdir(node: Node, state: dict[str, Any]) -> tuple[Path, str]:
    """The directory the CLI runs in, and the text that named it (for the cassette key)."""
    assert node.cli is not None
    directory = node.cli.base
    written = node.cli.workdir if node.cli else "."
    if written.startswith("$."):
        value = resolve_path(state, written[2:].split("."))
        if value is MISSING or not isinstance(value, str) or not value:
            raise cli_error(
                f"workdir {written} is not a path in state (found {value!r})"
                if value is not MISSING
                else f"workdir {written} is not set in state",
                "bad_workdir",
            )
        path = Path(value).expanduser()
        return (path if path.is_absolute() else directory / path).resolve(), value
    return (directory / written).resolve(), written


# -- the process -----------------------------------------------------------------------------


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_process(invocation: Invocation) -> dict[str, Any]:
    """Run the CLI to its end: stdout, the tail of stderr, exit code. Cancelled (a timeout), its
    whole process group is killed before the cancellation goes on."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *invocation.argv,
            cwd=invocation.cwd,
            env=invocation.env,
            stdin=asyncio.subprocess.PIPE
            if invocation.stdin is not None
            else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, killed as one
        )
    except FileNotFoundError:
        raise cli_error(
            f"'{invocation.argv[0]}' is not installed or not on PATH "
            "(install it, or replay recorded calls with --offline)",
            "missing_runtime",
        ) from None
    except PermissionError:
        raise cli_error(f"'{invocation.argv[0]}' is not executable", "missing_runtime") from None
    try:
        data = invocation.stdin.encode("utf-8") if invocation.stdin is not None else None
        out, err = await proc.communicate(data)
    except BaseException:
        _kill_group(proc.pid)
        await asyncio.shield(proc.wait())
        raise
    _kill_group(proc.pid)  # whatever it left running in the background goes with it
    return {
        "stdout": out.decode("utf-8", "replace"),
        "stderr": err.decode("utf-8", "replace")[-STDERR_TAIL:],
        "exit_code": proc.returncode,
    }


def snapshot(directory: Path) -> dict[str, str]:
    """Each file under `directory` (relative path) with a hash of its content."""
    found: dict[str, str] = {}
    if not directory.is_dir():
        return found
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in files:
            path = Path(root) / name
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                continue
            found[path.relative_to(directory).as_posix()] = digest
    return found


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[dict[str, str]]:
    changes = [
        {"path": p, "change": "added" if p not in before else "modified"}
        for p in sorted(after)
        if before.get(p) != after[p]
    ]
    changes += [{"path": p, "change": "deleted"} for p in sorted(set(before) - set(after))]
    return sorted(changes, key=lambda c: c["path"])


# -- the node --------------------------------------------------------------------------------


def _prompt(node: Node, values: dict[str, Any]) -> str:
    assert node.prompt is not None
    try:
        prompt = render(node.prompt.read_text("utf-8"), values)
    except TemplateError as exc:
        raise cli_error(str(exc), "template_error") from None
    if node.cli and node.cli.output_format == "json":
        prompt += json_instruction(node.schema, node.writes)
    return prompt


async def _call(
    node: Node,
    attempt: Attempt,
    recorder: CallRecorder,
    prompt: str,
    workdir: tuple[Path, str],
    turn: int,
) -> dict[str, Any]:
    cwd, as_given = workdir
    invocation = build_invocation(node, prompt, cwd)

    async def live() -> dict[str, Any]:
        cwd.mkdir(parents=True, exist_ok=True)
        before = snapshot(cwd)
        began = time.monotonic()
        result = await run_process(invocation)
        result["duration_ms"] = round((time.monotonic() - began) * 1000)
        result["files_changed"] = changed_files(before, snapshot(cwd))
        return result

    recorded = await recorder.call(
        "cli", (node.id, attempt.item, turn), invocation.request(node, as_given), live
    )
    response = recorded.response
    shown = [("<prompt>" if part == prompt else part) for part in invocation.argv]
    attempt.emit(
        CliCall,
        provider=node.cli.provider if node.cli else None,
        argv=shown,
        turn=turn,
        exit_code=response.get("exit_code"),
        duration_ms=response.get("duration_ms", 0),
        replayed=recorded.replayed,
        key=recorded.key,
        files_changed=response.get("files_changed", []),
    )
    if response.get("exit_code") != 0:
        tail = (response.get("stderr") or "").strip().splitlines()
        raise cli_error(
            f"'{invocation.argv[0]}' exited with code {response.get('exit_code')}"
            + (f": {tail[-1]}" if tail else ""),
            "cli_failed",
        )
    return response


def _reply(node: Node, stdout: str) -> str:
    if node.cli and node.cli.provider:
        return PROVIDERS[node.cli.provider].reply(stdout)
    return stdout


def _problems(node: Node, text: str) -> list[str]:
    try:
        value = parse_json_object(text)
    except ValueError as exc:
        return [f"the output is not JSON ({exc})"]
    if not isinstance(value, dict):
        return ["the output must be a JSON object"]
    return schema_errors(node.schema or {}, value)


async def run_cli_agent(
    node: Node, attempt: Attempt, recorder: CallRecorder, state: dict[str, Any]
) -> dict[str, Any]:
    """One attempt of a cli-agent node; returns the tool-shaped result {state_delta, ...}.
    `state` is the run's whole state, for a `workdir: $.field`."""
    values = {
        **attempt.inputs.get("_state", {}),
        **{k: v for k, v in attempt.inputs.items() if not k.startswith("_")},
    }
    workdir = resolve_workdir(node, state)
    prompt = _prompt(node, values)
    response = await _call(node, attempt, recorder, prompt, workdir, 1)
    text = _reply(node, response.get("stdout", ""))
    metrics = {"files_changed": len(response.get("files_changed", []))}
    if node.cli is None or node.cli.output_format == "text":
        text = text.strip("\n")
        return {"state_delta": {node.writes[0]: text}, "edge_output": text, "metrics": metrics}
    problems = _problems(node, text)
    if problems:
        attempt.emit(SchemaInvalid, errors=problems, final=False)
        request = repair_text(SCHEMA_REPAIR_HEADING, problems, SCHEMA_REPAIR_ASK)
        repair = f"{prompt}\n\nYour previous answer was:\n{text}\n\n{request}"
        response = await _call(node, attempt, recorder, repair, workdir, REPAIR_TURN)
        text = _reply(node, response.get("stdout", ""))
        problems = _problems(node, text)
        if problems:
            attempt.emit(SchemaInvalid, errors=problems, final=True)
            raise cli_error(
                f"the output did not match the schema after a repair turn: {problems[0]}",
                "schema_invalid",
            )
    value = parse_json_object(text)
    return {"state_delta": value, "edge_output": value, "metrics": metrics}
