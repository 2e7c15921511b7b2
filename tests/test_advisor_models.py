"""The advisor against real-shaped servers (the loopback server): failures are never silent,
requests are fitted to the context window, calls are recorded and replayed, and a proposal set
aside quotes what the model sent."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from loopback import LoopbackServer

runner = CliRunner()
EXAMPLE = Path(__file__).parent.parent / "examples" / "review-branch"
SECURITY = {
    "operation": "add-dataset-case",
    "title": "Review for security too",
    "rationale": "No dimension looks at input handling.",
    "confidence": "medium",
    "evidence": ["dimensions"],
    "edits": [
        {
            "file": "tools/list_dimensions.py",
            "search": '    {"name": "tests", "focus": "changed behaviour without tests, '
            'missing cases"},\n',
            "replace": '    {"name": "tests", "focus": "changed behaviour without tests, '
            'missing cases"},\n    {"name": "security", "focus": "injection"},\n',
        }
    ],
}


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test-key")


@pytest.fixture
def ran(tmp_path):
    """A copy of examples/review-branch run offline once: (workspace, experience dir)."""
    exp = tmp_path / "review-branch"
    shutil.copytree(EXAMPLE, exp)
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["run", str(exp), "--offline", "--workspace", str(ws)])
    assert result.exit_code == 0, result.output
    return ws, exp


def propose(ws, *args):
    return runner.invoke(app, ["propose", "last", "--workspace", str(ws), *args])


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


def report(ws) -> tuple[str, dict]:
    md = sorted((ws / "evolution").glob("*.md"))[-1]
    return md.read_text(), json.loads(md.with_suffix(".json").read_text())


def test_an_unreachable_model_fails_propose_with_the_reason_on_stderr(ran):
    ws, _ = ran
    base = f"http://127.0.0.1:{refused_port()}/v1"
    result = propose(ws, "--model", "openai/local", "--api-base", base)
    assert result.exit_code == 1
    assert "error: the model advisor failed: openai/local: " in result.stderr
    assert "Connection error" in result.stderr
    assert "fix: check that the model server is running" in result.stderr
    text, saved = report(ws)
    assert "**The model advisor failed:** openai/local: " in text
    assert "No proposal: the model advisor failed (see above)." in text
    assert "nothing to change" not in text
    assert saved["llm_failure"]["reason"].startswith("openai/local: ")
    assert saved["llm_calls"][0]["error_type"] == "connection"


def test_json_carries_the_failure_and_the_exit_status_stays_1(ran):
    ws, _ = ran
    base = f"http://127.0.0.1:{refused_port()}/v1"
    result = propose(ws, "--model", "openai/local", "--api-base", base, "--json")
    assert result.exit_code == 1
    printed = json.loads(result.stdout)
    assert printed["llm_failure"]["fix"].startswith("check that the model server is running")


def test_no_llm_never_fails_on_the_model(ran):
    ws, _ = ran
    result = propose(ws, "--no-llm", "--model", "openai/local", "--api-base", "http://127.0.0.1:9")
    assert result.exit_code == 0, result.output
    assert "advisor failed" not in result.output


def test_a_failure_beside_proposals_is_a_warning():
    from evolve.advisor.proposal import Proposal
    from evolve.advisor.report import Report
    from evolve.cli import _advisor_failure

    made = Proposal("tune-param", "high", "Raise it", "why", [], {})
    kwargs = {"experience": "x", "experience_dir": Path("."), "run_ids": ["r"]}
    kwargs |= {"apply_root": Path("."), "llm": "m", "llm_note": ""}
    some = Report(proposals=[made], llm_failure="down", llm_fix="start it", **kwargs)
    none = Report(proposals=[], llm_failure="down", llm_fix="start it", **kwargs)
    fine = Report(proposals=[], **kwargs)
    assert (_advisor_failure(some), _advisor_failure(none), _advisor_failure(fine)) == (
        False,
        True,
        False,
    )


def test_the_request_is_fitted_to_the_window_and_says_what_it_left_out(ran):
    ws, _ = ran
    props = {"default_generation_settings": {"n_ctx": 4096}}
    with LoopbackServer([{"json": {"proposals": [SECURITY]}}], props=props) as server:
        result = propose(ws, "--model", "openai/local", "--api-base", server.base)
    assert result.exit_code == 0, result.output
    sent = json.loads(server.requests[0]["messages"][-1]["content"])
    assert "README.md" not in sent["sources"]
    assert sent["left_out"].startswith("To fit the model's context window, this request leaves")
    assert server.requests[0]["max_tokens"] == 1024  # the reply gets what the window keeps
    text, saved = report(ws)
    assert "the advisor's request left out: files no node or eval uses (README.md)" in text
    assert saved["left_out"][0] == "files no node or eval uses (README.md)"
    assert [p["title"] for p in saved["proposals"]] == ["Review for security too"]


def test_a_window_too_small_even_after_cutting_fails_before_sending(ran):
    ws, _ = ran
    with LoopbackServer([]) as server:
        result = propose(
            ws, "--model", "openai/local", "--api-base", server.base, "--context-window", "1500"
        )
    assert server.requests == []
    assert result.exit_code == 1
    assert "the advisor's request is about" in result.stderr
    assert "context window is 1,500 (from --context-window)" in result.stderr
    assert "fix: give the model a larger context window" in result.stderr


def test_record_then_replay_with_the_server_stopped(ran, tmp_path):
    ws, exp = ran
    cassette = tmp_path / "advisor.jsonl"
    echo = {"json": {"type": "object", "properties": {"proposals": {"type": "array"}}}}
    script = [echo, {"json": {"proposals": [SECURITY]}}]
    with LoopbackServer(script, refuse_formats=("json_schema",)) as server:
        result = propose(
            ws, "--model", "openai/local", "--api-base", server.base, "--record", str(cassette)
        )
    assert result.exit_code == 0, result.output
    text, saved = report(ws)
    calls = saved["llm_calls"]
    assert [(c["n"], c["turn"], c["mode"]) for c in calls] == [
        (1, 1, "json_object"),
        (2, 2, "json_object"),
    ]
    assert calls[0]["refused_modes"][0].startswith("json_schema: ")
    assert "JSON Schema itself" in calls[1]["request"]["messages"][-1]["content"]
    assert calls[1]["reply"] == json.dumps({"proposals": [SECURITY]})
    assert saved["cassette"] == str(cassette)
    assert "call 1 (turn 1, json_object)" in text
    # replayed in another workspace (other run ids, so other request keys), nothing listening
    ws2 = tmp_path / "ws2"
    assert (
        runner.invoke(app, ["run", str(exp), "--offline", "--workspace", str(ws2)]).exit_code == 0
    )
    again = propose(ws2, "--model", "openai/local", "--replay", str(cassette))
    assert again.exit_code == 0, again.output
    _, replayed = report(ws2)
    assert [p["title"] for p in replayed["proposals"]] == ["Review for security too"]
    assert all(c["replayed"] for c in replayed["llm_calls"])


def test_a_dropped_proposal_quotes_what_the_model_sent(ran):
    ws, _ = ran
    shapeless = {"name": "security", "focus": "injection"}  # no operation, no edits
    script = [{"json": {"proposals": [shapeless]}}, {"json": {"proposals": [shapeless]}}]
    with LoopbackServer(script) as server:
        result = propose(ws, "--model", "openai/local", "--api-base", server.base)
    assert len(server.requests) == 2
    text, saved = report(ws)
    assert "- (untitled): unknown operation None" in text
    assert '  - the model sent: `{"name": "security", "focus": "injection"}`' in text
    assert saved["rejected"][0]["sent"] == shapeless
    # nothing the model sent could be used: the advisor failed, and says where to look
    assert result.exit_code == 1
    assert "none of the model's 1 proposal could be used, even after a repair turn" in (
        result.stderr
    )


def test_the_repair_turn_is_fitted_to_the_window_too(ran):
    ws, _ = ran
    props = {"default_generation_settings": {"n_ctx": 4096}}
    unusable = {**SECURITY, "edits": [{"file": "tools/list_dimensions.py", "search": "nowhere"}]}
    long = {**unusable, "rationale": "A long story. " * 12}  # the reply goes back in the repair
    script = [{"json": {"proposals": [long]}}, {"json": {"proposals": [SECURITY]}}]
    with LoopbackServer(script, props=props) as server:
        result = propose(ws, "--model", "openai/local", "--api-base", server.base)
    assert result.exit_code == 0, result.output
    assert len(server.requests) == 2
    first = json.loads(server.requests[0]["messages"][1]["content"])
    again = json.loads(server.requests[1]["messages"][1]["content"])
    assert len(json.dumps(again)) < len(json.dumps(first))  # cut further to make room
    _, saved = report(ws)
    assert [p["title"] for p in saved["proposals"]] == ["Review for security too"]
    assert [c.get("error_type") for c in saved["llm_calls"]] == [None, None]


def test_a_repair_turn_that_cannot_fit_is_said_so(ran):
    ws, _ = ran
    props = {"default_generation_settings": {"n_ctx": 4096}}
    unusable = {**SECURITY, "edits": [{"file": "tools/list_dimensions.py", "search": "nowhere"}]}
    huge = {**unusable, "rationale": "A very long story. " * 600}
    with LoopbackServer([{"json": {"proposals": [huge]}}], props=props) as server:
        result = propose(ws, "--model", "openai/local", "--api-base", server.base)
    assert len(server.requests) == 1  # the repair turn was never sent
    assert result.exit_code == 1
    assert "none of the model's 1 proposal could be used, and the repair turn failed: " in (
        result.stderr
    )
    assert "the advisor's repair turn is about" in result.stderr


def test_a_server_refusing_an_unfitted_request_says_to_give_the_window(ran):
    ws, _ = ran
    refusal = {"status": 400, "message": "Requested tokens (11066) exceed context window of 4096"}
    with LoopbackServer([refusal]) as server:  # no /props: the window is unknown
        result = propose(ws, "--model", "openai/local", "--api-base", server.base)
    assert len(server.requests) == 1
    assert result.exit_code == 1
    assert "error: the model advisor failed: openai/local: " in result.stderr
    assert "exceed context window of 4096" in result.stderr
    assert "fix: neither the server nor litellm says this model's context window" in result.stderr
    assert "--context-window N" in result.stderr


def test_propose_timeout_bounds_each_advisor_call(ran):
    ws, _ = ran
    with LoopbackServer([{"slow": 4, "json": {"proposals": []}}]) as server:
        result = propose(ws, "--model", "openai/local", "--api-base", server.base, "--timeout", "1")
    assert result.exit_code == 1
    assert "Timeout" in result.stderr
    assert "fix: the model did not answer within --timeout" in result.stderr
    _, saved = report(ws)
    assert saved["llm_calls"][0]["error_type"] == "timeout"
