"""Real-server behaviour against the loopback server: structured output modes and their fallback,
lenient JSON replies, schema echoes, context windows checked before sending, error classes."""

from __future__ import annotations

import json

import pytest

from evolve.llm.replies import example_of, parse_json_object, schema_echo
from evolve.runtime.run import RunOptions, start_run
from evolve.store.workspace import Workspace
from helpers import build, events, spec
from loopback import LoopbackServer

SCHEMA = {
    "type": "object",
    "required": ["verdict"],
    "properties": {"verdict": {"type": "string", "enum": ["ok", "bad"]}},
}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "output", "schema": SCHEMA, "strict": False},
}


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test-key")


def judge(tmp_path, prompt="Judge {{ doc }}", items=1, node_extra=None, runtime=None):
    """An agent with an output schema, asked once per item of `docs`."""
    node = {
        "id": "judge",
        "kind": "agent",
        "prompt": "judge.md",
        "reads": ["docs"],
        "writes": ["verdict"],
        "schema": SCHEMA,
        "on_error": {"policy": "skip"},
        **(node_extra or {}),
    }
    if items > 1:
        node["for_each"] = {"source": "$.docs", "concurrency": 1}
        prompt = prompt.replace("{{ doc }}", "{{ $item }}")
    else:
        prompt = prompt.replace("{{ doc }}", "{{ docs }}")
    state = {
        "docs": {"type": "array", "default": [f"doc {i}" for i in range(items)]},
        "verdict": {"type": "string"},
    }
    extra = {"runtime": runtime} if runtime else {}
    return build(tmp_path / "x", spec([node], state=state, **extra), {"judge.md": prompt})


def run_against(tmp_path, server, exp, **options):
    opts = RunOptions(model="openai/local", api_base=server.base, **options)
    return start_run(exp, Workspace(tmp_path / "ws"), opts)


def formats(server):
    return [(r.get("response_format") or {}).get("type") for r in server.requests]


# -- modes and their fallback -------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 422, 500])
def test_a_refused_json_schema_falls_back_to_json_object_and_is_remembered(tmp_path, status):
    script = [{"json": {"verdict": "ok"}}, {"json": {"verdict": "bad"}}]
    with LoopbackServer(script, refuse_formats=("json_schema",), refuse_status=status) as server:
        result = run_against(tmp_path, server, judge(tmp_path, items=2))
    assert result.status == "success", result.reason
    # one refusal, then JSON mode for this call and every later call of the run
    assert formats(server) == ["json_schema", "json_object", "json_object"]
    calls = events(result, "llm.call")
    assert [c["mode"] for c in calls] == ["json_object", "json_object"]
    assert "json_schema: openai/local: " in calls[0]["refused_modes"][0]
    assert "refused_modes" not in calls[1]
    assert events(result, "schema.invalid") == []  # no repair turn caused by the format


def test_a_server_refusing_both_formats_gets_the_schema_in_the_prompt_only(tmp_path):
    refuse = ("json_schema", "json_object")
    with LoopbackServer([{"json": {"verdict": "ok"}}], refuse_formats=refuse) as server:
        result = run_against(tmp_path, server, judge(tmp_path))
    assert result.status == "success", result.reason
    assert formats(server) == ["json_schema", "json_object", None]
    assert events(result, "llm.call")[0]["mode"] == "prompt"
    assert '"enum": ["ok", "bad"]' in server.requests[-1]["messages"][-1]["content"]


def test_a_refusal_about_something_else_is_not_a_format_fallback(tmp_path):
    with LoopbackServer([{"status": 400}]) as server:
        result = run_against(tmp_path, server, judge(tmp_path))
    assert formats(server) == ["json_schema"]  # "scripted 400" names no format: no fallback
    assert [f["error_type"] for f in events(result, "node.failed")] == ["bad_request"]


@pytest.mark.parametrize(
    ("where", "mode", "sent"),
    [
        ("runtime", "json_object", "json_object"),
        ("node", "prompt", None),
        ("runtime", "json_schema", "json_schema"),
    ],
)
def test_structured_output_can_be_forced(tmp_path, where, mode, sent):
    setting = {"structured_output": mode}
    exp = (
        judge(tmp_path, runtime=setting)
        if where == "runtime"
        else judge(tmp_path, node_extra=setting, runtime={"structured_output": "json_schema"})
    )
    with LoopbackServer([{"json": {"verdict": "ok"}}]) as server:
        result = run_against(tmp_path, server, exp)
    assert result.status == "success", result.reason
    assert formats(server) == [sent]
    assert events(result, "llm.call")[0]["mode"] == mode


def test_a_forced_mode_is_never_swapped_for_another(tmp_path):
    exp = judge(tmp_path, runtime={"structured_output": "json_schema"})
    with LoopbackServer([], refuse_formats=("json_schema",)) as server:
        result = run_against(tmp_path, server, exp)
    assert formats(server) == ["json_schema"]
    failed = events(result, "node.failed")
    assert [f["error_type"] for f in failed] == ["bad_request"]
    assert "'json_schema' is not supported" in failed[0]["error"]


# -- replies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        '```json\n{"verdict": "ok"}\n```',
        'Here is my answer:\n```\n{"verdict": "ok"}\n```\nHope it helps.',
        'Sure! {"verdict": "ok"} is my verdict.',
    ],
)
def test_fenced_replies_and_text_around_one_object_are_parsed(tmp_path, reply):
    with LoopbackServer([{"text": reply}]) as server:
        result = run_against(tmp_path, server, judge(tmp_path))
    assert result.status == "success", result.reason
    assert result.state["verdict"] == "ok"
    assert len(server.requests) == 1  # no repair turn was needed


def test_a_schema_echo_is_recognised_and_repaired_with_a_message_saying_so(tmp_path):
    with LoopbackServer([{"json": SCHEMA}, {"json": {"verdict": "bad"}}]) as server:
        result = run_against(tmp_path, server, judge(tmp_path))
    assert result.status == "success", result.reason
    assert result.state["verdict"] == "bad"
    invalid = events(result, "schema.invalid")
    assert len(invalid) == 1
    assert invalid[0]["errors"][0].startswith("your answer was the JSON Schema itself")
    repair = server.requests[1]["messages"][-1]["content"]
    assert "the JSON Schema itself, not an object that matches it" in repair
    assert '{"verdict": "ok"}' in repair  # the shape wanted, shown by example


def test_parse_json_object_rules():
    assert parse_json_object('  {"a": 1}  ') == {"a": 1}
    assert parse_json_object('text {"a": {"b": [1, 2]}} more') == {"a": {"b": [1, 2]}}
    with pytest.raises(ValueError, match="2 JSON objects"):
        parse_json_object('{"a": 1} and {"b": 2}')
    with pytest.raises(ValueError, match="2 fenced blocks"):
        parse_json_object("```json\n{}\n```\n```json\n{}\n```")
    with pytest.raises(ValueError):
        parse_json_object("no json here")


def test_schema_echo_rules():
    assert schema_echo(SCHEMA, SCHEMA)
    assert schema_echo({"type": "object", "properties": {"verdict": {}}}, SCHEMA)
    assert not schema_echo({"verdict": "ok"}, SCHEMA)
    # a schema whose answers are schemas never takes an answer for an echo
    meta = {"type": "object", "required": ["type", "properties"]}
    assert not schema_echo({"type": "object", "properties": {}}, meta)
    nested = {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"enum": ["a"]}}, "n": {"type": "integer"}},
    }
    assert example_of(nested) == {"xs": ["a"], "n": 0}


# -- context windows ----------------------------------------------------------------------------


LONG = "Judge {{ doc }}\n" + "Consider every word of this very long preamble. " * 120


@pytest.mark.parametrize(
    ("server_args", "options", "runtime", "source"),
    [
        ({"props": {"default_generation_settings": {"n_ctx": 512}}}, {}, None, "/props"),
        ({"models": {"data": [{"id": "local", "max_model_len": 512}]}}, {}, None, "max_model_len"),
        ({}, {"context_window": 512}, None, "--context-window"),
        ({}, {}, {"context_window": 512}, "runtime.context_window"),
    ],
)
def test_an_over_long_prompt_fails_before_sending(tmp_path, server_args, options, runtime, source):
    exp = judge(tmp_path, prompt=LONG, runtime=runtime)
    with LoopbackServer([{"json": {"verdict": "ok"}}], **server_args) as server:
        result = run_against(tmp_path, server, exp, **options)
    assert server.requests == []  # never sent to fail remotely
    failed = events(result, "node.failed")
    assert [f["error_type"] for f in failed] == ["context_overflow"]
    message = failed[0]["error"]
    assert message.startswith("node 'judge': the prompt is about ")
    assert "context window is 512 (from " in message and source in message
    assert "nothing was sent" in message and "runtime.context_window" in message


def test_a_prompt_that_fits_is_sent(tmp_path):
    exp = judge(tmp_path, prompt=LONG)
    props = {"default_generation_settings": {"n_ctx": 8192}}
    with LoopbackServer([{"json": {"verdict": "ok"}}], props=props) as server:
        result = run_against(tmp_path, server, exp)
    assert result.status == "success", result.reason
    assert len(server.requests) == 1


def test_a_server_side_overflow_is_context_overflow_and_never_retried(tmp_path):
    message = "Requested tokens (5210) exceed context window of 4096"
    exp = judge(tmp_path, node_extra={"on_error": {"policy": "retry", "attempts": 3}})
    with LoopbackServer([{"status": 400, "message": message}]) as server:
        result = run_against(tmp_path, server, exp)
    assert len(server.requests) == 1
    assert [f["error_type"] for f in events(result, "node.failed")] == ["context_overflow"]


# -- error classes ------------------------------------------------------------------------------


def test_error_classes_come_from_litellm_types_before_message_text():
    from evolve.llm.client import _error_type, litellm

    lib = litellm()
    bad = lib.BadRequestError("the field api_key_hint is unknown", "openai/local", "openai")
    assert _error_type(bad) == "bad_request"  # a 400 naming api_key is no auth failure
    auth = lib.AuthenticationError("Incorrect API key provided", "openai", "openai/local")
    assert _error_type(auth) == "auth"
    over = lib.ContextWindowExceededError("too long", "openai/local", "openai")
    assert _error_type(over) == "context_overflow"
    limit = lib.RateLimitError("slow down, api key quota", "openai", "openai/local")
    assert _error_type(limit) == "rate_limit"
    missing = lib.InternalServerError(
        "OpenAIException - Missing credentials. Please pass an `api_key`", "openai", "x"
    )
    assert _error_type(missing) == "auth"  # litellm's catch-all: only then the message


def test_the_cassette_records_the_mode_that_answered(tmp_path):
    cassette = tmp_path / "rec.jsonl"
    with LoopbackServer([{"json": {"verdict": "ok"}}], refuse_formats=("json_schema",)) as server:
        result = run_against(tmp_path, server, judge(tmp_path), record=cassette)
    assert result.status == "success"
    lines = [json.loads(x) for x in cassette.read_text().splitlines()]
    assert [x["response"]["mode"] for x in lines] == ["json_object"]


# -- slow models --------------------------------------------------------------------------------


def test_progress_shows_a_call_in_flight_and_an_unknown_cost_as_a_dash():
    import io
    import time

    from evolve.llm import inflight
    from evolve.report.progress import Progress

    def call(seq: int, **fields):
        envelope = {"v": 1, "seq": seq, "ts": "2026-01-01T00:00:00.000Z", "run_id": "r-x"}
        return {**envelope, "type": "llm.call", "node_id": "review", "attempt": 1, **fields}

    shown = io.StringIO()
    progress = Progress(stream=shown, tick_s=0.05)
    token = inflight.begin("review", 2, "openai/local")
    try:
        with progress:
            progress(call(1, tokens_in=10, tokens_out=5))
            deadline = time.monotonic() + 5
            while "waiting for" not in shown.getvalue() and time.monotonic() < deadline:
                time.sleep(0.02)
            table = progress.table()
    finally:
        inflight.end(token)
    assert "… review item 2: waiting for openai/local (" in shown.getvalue()
    assert progress.cost is None and "cost —" in str(table.title)
    assert inflight.snapshot() == []
    progress(call(2, cost_usd=0.002))
    assert progress.cost == pytest.approx(0.002)


def test_a_real_call_is_in_flight_only_while_it_waits(tmp_path):
    from evolve.llm import inflight

    seen = []
    with LoopbackServer([{"slow": 0.5, "json": {"verdict": "ok"}}]) as server:
        import threading
        import time

        def watch():
            while not server.requests:
                time.sleep(0.01)
            seen.extend(inflight.snapshot())

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        result = run_against(tmp_path, server, judge(tmp_path))
        watcher.join(5)
    assert result.status == "success"
    assert [(c.node_id, c.model) for c in seen] == [("judge", "openai/local")]
    assert inflight.snapshot() == []


# -- a cassette recorded from a real model -------------------------------------------------------


def test_the_recorded_real_model_cassette_replays_offline(tmp_path):
    from pathlib import Path

    example = Path(__file__).parent.parent / "examples" / "review-branch"
    (cassette,) = (example / "cassettes" / "recorded").glob("*.jsonl")
    lines = [json.loads(x) for x in cassette.read_text().splitlines()]
    assert {x["model"] for x in lines} == {"openai/local"}
    assert all(x["key"] and x["response"]["mode"] == "json_schema" for x in lines)
    options = RunOptions(model="openai/local", replay=cassette)
    result = start_run(example, Workspace(tmp_path / "ws"), options)
    assert result.status == "success", result.reason
    calls = events(result, "llm.call")
    assert len(calls) == len(lines) and all(c["replayed"] for c in calls)
    assert {c["mode"] for c in calls} == {"json_schema"}
    assert events(result, "schema.invalid") == []
    recorded = [f["title"] for x in lines for f in json.loads(x["response"]["text"])["findings"]]
    assert sorted(f["title"] for f in result.state["findings"]) == sorted(recorded)


def test_ollama_reports_its_window_through_api_show(monkeypatch):
    from evolve.llm import context

    asked = []

    def post(url, payload):
        asked.append((url, payload))
        return {"parameters": "num_ctx 8192\nstop <|eot|>", "model_info": {"x.context_length": 1}}

    monkeypatch.setattr(context, "_post", post)
    found = context.ask_server("ollama/llama3.1", None)
    assert found == context.Window(8192, "Ollama's /api/show num_ctx")
    assert asked == [("http://localhost:11434/api/show", {"model": "llama3.1"})]
    monkeypatch.setattr(
        context, "_post", lambda url, payload: {"model_info": {"l.context_length": 4096}}
    )
    assert context.ask_server("ollama_chat/x", "http://h:1").tokens == 4096


def test_an_agent_call_waits_as_long_as_its_attempt_may_last(tmp_path):
    from fakes import ScriptedModel

    model = ScriptedModel([{"verdict": "ok"}])
    exp = judge(tmp_path, node_extra={"timeout_ms": 900_000})
    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions(model="m"), model)
    assert result.status == "success", result.reason
    assert [c.timeout_s for c in model.calls] == [900.0]  # not litellm's 600 s
