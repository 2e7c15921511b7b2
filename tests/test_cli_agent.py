"""cli-agent nodes, driven through a fake CLI standing in for claude, codex, gemini and a command.

Each test builds a tiny experience whose prompt carries a MODE word the fake acts on (see
tests/fake_cli/agent_cli.py), runs it, and reads the events and state.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from tests.helpers import build, events, run, spec

FAKE = Path(__file__).parent / "fake_cli" / "agent_cli.py"
PROVIDERS = {"claude-code": "claude", "codex": "codex", "gemini": "gemini"}


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A PATH holding the fake under each provider's executable name, and `mycli`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in [*PROVIDERS.values(), "mycli"]:
        (bin_dir / name).symlink_to(FAKE)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "cli-log.jsonl"
    monkeypatch.setenv("FAKE_CLI_LOG", str(log))
    return log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def cli_node(mode: str = "text", **fields) -> dict:
    node = {
        "id": "fix",
        "kind": "cli-agent",
        "prompt": "prompts/fix.md",
        "workdir": "work",
        "reads": ["topic"],
        "writes": ["answer"],
        **fields,
    }
    if "command" not in node and "provider" not in node:
        node["provider"] = "claude-code"
    return node


def experience(root: Path, mode: str = "text", **fields) -> Path:
    return build(
        root,
        spec(
            [cli_node(**fields)],
            state={"topic": {"type": "string", "default": "tests"}, "answer": {"type": "string"}},
        ),
        {"prompts/fix.md": f"Work on {{{{ topic }}}}. MODE:{mode}\n"},
    )


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_each_provider_runs_its_cli_and_the_text_reply_is_written(tmp_path, fake_bin, provider):
    exp = experience(tmp_path / "exp", provider=provider, model="m-1", extra_args=["--yes"])
    result = run(exp, tmp_path / "ws")
    assert result.status == "success", result.reason
    assert result.state["answer"] == f"hello from {PROVIDERS[provider]}"
    [call] = calls(fake_bin)
    assert call["prompt"] == "Work on tests. MODE:text\n"
    assert call["cwd"] == str((exp / "work").resolve())  # created, since it was missing
    assert "--yes" in call["argv"] and "m-1" in call["argv"]
    expected_start = {
        "claude-code": ["-p", "Work on tests. MODE:text\n", "--output-format", "json"],
        "codex": ["exec", "--skip-git-repo-check", "--model", "m-1"],
        "gemini": ["-p", "Work on tests. MODE:text\n", "-m", "m-1"],
    }[provider]
    assert call["argv"][: len(expected_start)] == expected_start
    [event] = events(result, "cli.call")
    assert event["exit_code"] == 0 and event["replayed"] is False
    assert "<prompt>" in event["argv"] and "Work on tests" not in json.dumps(event)


def test_a_command_cli_gets_the_prompt_on_stdin_and_the_model_in_its_environment(
    tmp_path, fake_bin
):
    exp = experience(tmp_path / "exp", command=["mycli", "--flag"], model="m-2")
    result = run(exp, tmp_path / "ws")
    assert result.state["answer"] == "hello from mycli"
    [call] = calls(fake_bin)
    assert call["argv"] == ["--flag"] and call["prompt"].startswith("Work on tests.")


def test_json_output_is_checked_against_the_schema(tmp_path, fake_bin):
    schema = {
        "type": "object",
        "required": ["answer"],
        "properties": {"answer": {"type": "string"}},
    }
    exp = experience(
        tmp_path / "exp", "json", provider="gemini", output_format="json", schema=schema
    )
    result = run(exp, tmp_path / "ws")
    assert result.state["answer"] == "gemini says yes"
    assert "JSON Schema" in calls(fake_bin)[0]["prompt"]


def test_a_json_reply_off_the_schema_gets_one_repair_turn(tmp_path, fake_bin):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    exp = experience(tmp_path / "exp", "badjson", output_format="json", schema=schema)
    result = run(exp, tmp_path / "ws")
    assert result.status == "success", result.reason
    assert result.state["answer"] == "fixed"
    _, second = calls(fake_bin)
    assert "did not match the schema" in second["prompt"] and "$.answer" in second["prompt"]
    assert [e["turn"] for e in events(result, "cli.call")] == [1, 2]
    [invalid] = events(result, "schema.invalid")
    assert invalid["final"] is False


def test_a_non_zero_exit_fails_the_attempt_with_the_last_stderr_line(tmp_path, fake_bin):
    exp = experience(
        tmp_path / "exp", "fail", on_error={"policy": "retry", "attempts": 2, "base_ms": 1}
    )
    result = run(exp, tmp_path / "ws")
    assert result.status == "failed"
    failed = events(result, "node.failed")
    assert [e["error_type"] for e in failed] == ["cli_failed", "cli_failed"]  # retried once
    assert failed[0]["error"] == "'claude' exited with code 3: boom: the agent gave up"
    assert [e["exit_code"] for e in events(result, "cli.call")] == [3, 3]


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for its (re)parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_a_timeout_kills_the_whole_process_group(tmp_path, fake_bin, monkeypatch):
    pidfile = tmp_path / "pids"
    monkeypatch.setenv("FAKE_CLI_PIDFILE", str(pidfile))
    exp = experience(tmp_path / "exp", "sleep", timeout_ms=3000)  # room for a slow start
    result = run(exp, tmp_path / "ws")
    assert result.status == "failed"
    assert [e["timeout_ms"] for e in events(result, "node.timeout")] == [3000]
    pids = [int(p) for p in pidfile.read_text().split()]
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if not _gone(p)] == []  # the CLI and the child it started


def test_files_changed_in_the_workdir_are_listed_in_the_event(tmp_path, fake_bin):
    exp = experience(tmp_path / "exp", "write")
    (exp / "work").mkdir()
    (exp / "work" / "existing.txt").write_text("before\n")
    (exp / "work" / "doomed.txt").write_text("bye\n")
    (exp / "work" / "same.txt").write_text("untouched\n")
    result = run(exp, tmp_path / "ws")
    [event] = events(result, "cli.call")
    assert event["files_changed"] == [
        {"path": "doomed.txt", "change": "deleted"},
        {"path": "existing.txt", "change": "modified"},
        {"path": "new.txt", "change": "added"},
    ]
    assert events(result, "node.finished")[0]["metrics"] == {"files_changed": 3}


def test_a_recorded_call_replays_offline_without_the_cli(tmp_path, fake_bin, monkeypatch):
    exp = experience(tmp_path / "exp", "write")
    cassette = exp / "cassettes" / "calls.jsonl"
    recorded = run(exp, tmp_path / "ws", record=cassette)
    assert recorded.status == "success"
    line = json.loads(cassette.read_text())
    assert line["kind"] == "cli" and line["response"]["exit_code"] == 0
    monkeypatch.setenv("PATH", "/nonexistent")  # no CLI at all now
    replayed = run(exp, tmp_path / "ws", offline=True)
    assert replayed.status == "success", replayed.reason
    assert replayed.state["answer"] == "edited three files"
    [event] = events(replayed, "cli.call")
    assert event["replayed"] is True
    assert [f["path"] for f in event["files_changed"]] == ["existing.txt", "new.txt"]
    assert len(calls(fake_bin)) == 1  # only the recording ran the CLI


def test_a_hand_written_cassette_line_answers_by_node(tmp_path, monkeypatch):
    exp = experience(tmp_path / "exp")
    (exp / "cassettes").mkdir()
    (exp / "cassettes" / "calls.jsonl").write_text(
        json.dumps({"node": "fix", "response": {"stdout": '{"result": "hi"}', "exit_code": 0}})
        + "\n"
    )
    monkeypatch.setenv("PATH", "/nonexistent")
    result = run(exp, tmp_path / "ws", offline=True)
    assert result.state["answer"] == "hi"  # claude's envelope unwrapped


def test_replay_without_a_recorded_call_is_a_cassette_miss(tmp_path):
    exp = experience(tmp_path / "exp")
    result = run(exp, tmp_path / "ws", offline=True)
    [failed] = events(result, "node.failed")
    assert failed["error_type"] == "cassette_miss"
    assert "no cassette entry for the cli call of node 'fix'" in failed["error"]


def test_a_missing_cli_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    exp = experience(tmp_path / "exp", provider="codex")
    result = run(exp, tmp_path / "ws")
    [failed] = events(result, "node.failed")
    assert failed["error_type"] == "missing_runtime"
    assert failed["error"].startswith("'codex' is not installed or not on PATH")


def test_a_workdir_from_state_is_used(tmp_path, fake_bin):
    exp = build(
        tmp_path / "exp",
        spec(
            [cli_node(workdir="$.repo")],
            state={
                "topic": {"type": "string", "default": "x"},
                "repo": {"type": "string"},
                "answer": {"type": "string"},
            },
        ),
        {"prompts/fix.md": "MODE:text {{ topic }}"},
    )
    target = tmp_path / "elsewhere"
    result = run(exp, tmp_path / "ws", args={"repo": str(target)})
    assert result.status == "success", result.reason
    assert calls(fake_bin)[0]["cwd"] == str(target)
