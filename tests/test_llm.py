"""The model layer: litellm calls (a fake provider and a loopback HTTP server), structured output,
tokens and cost, budgets, secrets, and record/replay."""

from __future__ import annotations

import json
import socket
import sqlite3

import pytest
from typer.testing import CliRunner

from evolve.cli import app
from evolve.llm.client import litellm
from evolve.runtime.run import RunOptions, start_run
from evolve.store.workspace import Workspace
from helpers import build, events, spec, tool
from loopback import LoopbackServer

SECRET = "sk-test-0123456789abcdef"
SCHEMA = {
    "type": "object",
    "required": ["verdict"],
    "properties": {"verdict": {"type": "string", "enum": ["ok", "bad"]}},
}


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


class FakeProvider:
    """A litellm custom provider with a queue of replies and a history of calls."""

    def __init__(self):
        from litellm import CustomLLM, ModelResponse

        provider = self

        class Handler(CustomLLM):
            async def acompletion(self, model, messages, *args, **kwargs):
                provider.calls.append(
                    {
                        "model": model,
                        "messages": messages,
                        "params": kwargs.get("optional_params", {}),
                    }
                )
                reply = provider.replies.pop(0)
                if isinstance(reply, Exception):
                    raise reply
                content = reply if isinstance(reply, str) else json.dumps(reply)
                return ModelResponse(
                    model=model,
                    choices=[{"message": {"role": "assistant", "content": content}}],
                    usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
                )

        self.handler = Handler()
        self.replies: list = []
        self.calls: list[dict] = []


@pytest.fixture
def fake():
    lib = litellm()
    from litellm.utils import custom_llm_setup

    provider = FakeProvider()
    saved = list(lib.custom_provider_map)
    lib.custom_provider_map = [{"provider": "fake", "custom_handler": provider.handler}]
    custom_llm_setup()
    yield provider
    lib.custom_provider_map = saved


def agent_experience(tmp_path, prompt, node_extra=None, state=None, before=True):
    node = {
        "id": "judge",
        "kind": "agent",
        "prompt": "prompts/judge.md",
        "reads": ["doc"],
        "writes": ["verdict"],
        "schema": SCHEMA,
        "on_error": {"policy": "skip"},
        **(node_extra or {}),
    }
    nodes = [tool("load", "tools/load.py", writes=["doc"]), node] if before else [node]
    edges = [{"from": "load", "to": "judge"}] if before else []
    fields = {"doc": {"type": "object"}, "verdict": {"type": "string"}, **(state or {})}
    return build(
        tmp_path / "x",
        spec(nodes, edges, state=fields),
        {
            "prompts/judge.md": prompt,
            "tools/load.py": "def run(i):\n    return {'state_delta': {'doc': {'title': 'T', "
            "'tags': ['a', 'b']}}}\n",
        },
    )


# -- a fake provider registered with litellm --------------------------------------------------


def test_rendering_structured_output_tokens(tmp_path, fake):
    exp = agent_experience(tmp_path, "Title {{ doc.title }}; tags {{ doc.tags }}; whole {{ doc }}")
    fake.replies = [{"verdict": "ok"}]
    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions(model="fake/judge"))
    assert result.status == "success", result.reason
    assert result.state["verdict"] == "ok"
    prompt = fake.calls[0]["messages"][-1]["content"]
    assert prompt.startswith('Title T; tags ["a", "b"]; whole {"title": "T", "tags": ["a", "b"]}')
    assert '"enum": ["ok", "bad"]' in prompt  # the schema is in the instructions
    assert fake.calls[0]["params"]["response_format"] == {"type": "json_object"}
    call = events(result, "llm.call")[0]
    assert (call["tokens_in"], call["tokens_out"], call["replayed"]) == (9, 4, False)
    assert "cost_usd" not in call  # litellm has no price for this model: null, not a crash
    assert result.tokens_in == 9 and result.cost_usd is None


def test_repair_turn_then_text_mode(tmp_path, fake):
    exp = agent_experience(tmp_path, "Judge {{ doc.title }}")
    fake.replies = [{"verdict": "maybe"}, {"verdict": "bad"}]
    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions(model="fake/judge"))
    assert result.state["verdict"] == "bad"
    assert len(fake.calls) == 2
    repair = fake.calls[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"verdict": "maybe"}'}
    assert "$.verdict: 'maybe' is not one of ['ok', 'bad']" in repair[-1]["content"]
    invalid = events(result, "schema.invalid")
    assert len(invalid) == 1 and invalid[0]["final"] is False

    text = build(
        tmp_path / "t",
        spec(
            [{"id": "write", "kind": "agent", "prompt": "p.md", "writes": ["poem"]}],
            state={"poem": {"type": "string"}},
        ),
        {"p.md": "A poem please"},
    )
    fake.replies = ["roses are red"]
    result = start_run(text, Workspace(tmp_path / "ws"), RunOptions(model="fake/poet"))
    assert result.state["poem"] == "roses are red"
    assert "response_format" not in fake.calls[-1]["params"]


def test_unknown_placeholder_is_an_error_never_sent(tmp_path):
    exp = agent_experience(tmp_path, "Judge {{ doc.title }} and {{ verdicts }}")
    from evolve.errors import SpecError
    from evolve.spec import load_experience

    with pytest.raises(SpecError) as caught:
        load_experience(exp)
    assert "x/prompts/judge.md:1:27: placeholder '{{ verdicts }}' names no readable field" in str(
        caught.value
    )


def ten_questions(tmp_path):
    """An agent asked ten questions one at a time: a budget stops it part way."""
    node = {
        "id": "ask",
        "kind": "agent",
        "prompt": "p.md",
        "writes": ["answers"],
        "for_each": {"source": "$.qs", "concurrency": 1},
    }
    state = {
        "qs": {"type": "array", "default": list(range(10))},
        "answers": {"type": "array", "merge": "array_append"},
    }
    return build(tmp_path / "x", spec([node], state=state), {"p.md": "Q {{ $item }}"})


def test_max_cost_stops_the_run_cleanly(tmp_path):
    from fakes import ScriptedModel

    exp = ten_questions(tmp_path)
    model = ScriptedModel(["a"] * 10)  # each call costs $0.001
    result = start_run(
        exp, Workspace(tmp_path / "ws"), RunOptions(model="fake/m", max_cost=0.0025), model
    )
    assert result.status == "failed" and result.exit_code == 1
    assert result.reason == "budget reached: spent $0.0030 of --max-cost $0.0025"
    assert len(model.calls) == 3
    finished = events(result, "run.finished")[0]
    assert finished["stopped"] == "max_cost" and finished["cost_usd"] == pytest.approx(0.003)


# -- the loopback OpenAI-compatible server ------------------------------------------------------


def loop_run(tmp_path, server_base, node_extra=None, record=None):
    exp = agent_experience(tmp_path, "Judge {{ doc.title }}", node_extra)
    options = RunOptions(model="openai/evolve-test", api_base=server_base, record=record)
    return exp, start_run(exp, Workspace(tmp_path / "ws"), options)


def assert_load_write_kept(tmp_path, result):
    db = sqlite3.connect(tmp_path / "ws" / "state.sqlite")
    row = db.execute(
        "select value from state_snapshot where run_id = ? and field = 'doc'", [result.run_id]
    ).fetchone()
    assert json.loads(row[0]) == {"title": "T", "tags": ["a", "b"]}


def test_loopback_good_json_reply(tmp_path):
    with LoopbackServer([{"json": {"verdict": "ok"}}]) as server:
        _, result = loop_run(tmp_path, server.base)
    assert result.status == "success" and result.state["verdict"] == "ok"
    assert server.requests[0]["model"] == "evolve-test"
    assert server.requests[0]["response_format"] == {  # an OpenAI-compatible server: schema first
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": False},
    }
    assert [e["mode"] for e in events(result, "llm.call")] == ["json_schema"]
    headers = {k.lower(): v for k, v in server.headers[0].items()}
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert [e["tokens_in"] for e in events(result, "llm.call")] == [11]
    assert_load_write_kept(tmp_path, result)
    # the key went to the server, and nowhere into what evolve wrote
    assert SECRET not in result.log_path.read_text()
    dump = "\n".join(sqlite3.connect(tmp_path / "ws" / "state.sqlite").iterdump())
    assert SECRET not in dump


def test_loopback_schema_invalid_then_repaired(tmp_path):
    with LoopbackServer([{"json": {"verdict": 3}}, {"json": {"verdict": "bad"}}]) as server:
        _, result = loop_run(tmp_path, server.base)
    assert result.status == "success" and result.state["verdict"] == "bad"
    assert len(server.requests) == 2
    assert [e["final"] for e in events(result, "schema.invalid")] == [False]


def test_loopback_rate_limit_then_success_under_retry(tmp_path):
    policy = {"on_error": {"policy": "retry", "attempts": 3, "base_ms": 10}}
    with LoopbackServer([{"status": 429}, {"json": {"verdict": "ok"}}]) as server:
        _, result = loop_run(tmp_path, server.base, policy)
    assert result.status == "success", result.reason
    assert len(server.requests) == 2  # no hidden second retry layer under the policy
    failed = events(result, "node.failed")
    assert [f["error_type"] for f in failed] == ["rate_limit"]
    assert [r["attempt"] for r in events(result, "node.retry")] == [1]
    assert_load_write_kept(tmp_path, result)


def test_loopback_server_error(tmp_path):
    with LoopbackServer([{"status": 500}]) as server:
        _, result = loop_run(tmp_path, server.base)
    assert len(server.requests) == 1
    assert result.status == "partial"
    assert [f["error_type"] for f in events(result, "node.failed")] == ["server_error"]
    assert "verdict" not in result.state
    assert_load_write_kept(tmp_path, result)


def test_loopback_reply_slower_than_timeout(tmp_path):
    with LoopbackServer([{"slow": 3, "json": {"verdict": "ok"}}]) as server:
        _, result = loop_run(tmp_path, server.base, {"timeout_ms": 400})
    assert result.status == "partial"
    assert events(result, "node.timeout")[0]["timeout_ms"] == 400
    assert [f["error_type"] for f in events(result, "node.failed")] == ["timeout"]
    assert_load_write_kept(tmp_path, result)


def test_loopback_malformed_body(tmp_path):
    with LoopbackServer([{"malformed": True}]) as server:
        _, result = loop_run(tmp_path, server.base)
    assert result.status == "partial"
    failed = events(result, "node.failed")
    assert len(failed) == 1 and failed[0]["error_type"] == "bad_response"
    assert_load_write_kept(tmp_path, result)


def test_connection_refused(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the run: nothing listens there
    _, result = loop_run(tmp_path, f"http://127.0.0.1:{port}/v1")
    assert result.status == "partial"
    assert [f["error_type"] for f in events(result, "node.failed")] == ["connection"]
    assert_load_write_kept(tmp_path, result)


def test_record_then_replay_with_the_server_stopped(tmp_path):
    cassette = tmp_path / "calls.jsonl"
    with LoopbackServer([{"json": {"verdict": 3}}, {"json": {"verdict": "ok"}}]) as server:
        exp, recorded = loop_run(tmp_path, server.base, record=cassette)
    assert recorded.status == "success"
    lines = [json.loads(x) for x in cassette.read_text().splitlines()]
    assert [(x["node"], x["turn"]) for x in lines] == [("judge", 1), ("judge", 2)]
    assert SECRET not in cassette.read_text()
    seen = len(server.requests)
    replayed = start_run(
        exp, Workspace(tmp_path / "ws"), RunOptions(model="openai/evolve-test", replay=cassette)
    )
    assert len(server.requests) == seen  # the stopped server saw nothing more
    assert replayed.status == "success"
    assert replayed.state == recorded.state
    assert all(e["replayed"] for e in events(replayed, "llm.call"))


def test_replay_miss_names_node_item_key_and_how_to_rerecord(tmp_path):
    exp = agent_experience(tmp_path, "Judge {{ doc.title }}")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions(replay=empty))
    error = events(result, "node.failed")[0]
    assert error["error_type"] == "cassette_miss"
    assert error["error"].startswith("no cassette entry for node 'judge' (turn 1, key ")
    assert "re-record with --record FILE" in error["error"]


def test_hand_written_cassette_matches_by_node_and_item(tmp_path):
    exp = agent_experience(tmp_path, "Judge {{ doc.title }}")
    (exp / "cassettes").mkdir()
    (exp / "cassettes" / "judge.jsonl").write_text(
        json.dumps({"node": "judge", "response": {"json": {"verdict": "bad"}}}) + "\n"
    )
    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions(offline=True))
    assert result.status == "success" and result.state["verdict"] == "bad"
    # a prompt edit does not break a hand-written cassette
    (exp / "prompts" / "judge.md").write_text("Judge harder: {{ doc.title }}")
    again = start_run(exp, Workspace(tmp_path / "ws"), RunOptions(offline=True))
    assert again.state["verdict"] == "bad"


def test_cost_comes_from_litellm_prices_when_it_knows_the_model(tmp_path):
    litellm().register_model(
        {
            "openai/evolve-priced": {
                "input_cost_per_token": 0.001,
                "output_cost_per_token": 0.002,
                "litellm_provider": "openai",
                "mode": "chat",
            }
        }
    )
    exp = agent_experience(tmp_path, "Judge {{ doc.title }}")
    with LoopbackServer([{"json": {"verdict": "ok"}}]) as server:
        result = start_run(
            exp,
            Workspace(tmp_path / "ws"),
            RunOptions(model="openai/evolve-priced", api_base=server.base),
        )
    call = events(result, "llm.call")[0]
    assert call["cost_usd"] == pytest.approx(11 * 0.001 + 7 * 0.002)
    assert result.cost_usd == pytest.approx(0.025)
    db = sqlite3.connect(tmp_path / "ws" / "state.sqlite")
    assert db.execute("select cost_usd from runs where id = ?", [result.run_id]).fetchone()[
        0
    ] == pytest.approx(0.025)


def test_budget_stop_through_litellm_with_a_priced_fake_provider(tmp_path, fake):
    litellm().register_model(
        {
            "fake/priced": {
                "input_cost_per_token": 0.0001,
                "output_cost_per_token": 0.0002,
                "litellm_provider": "fake",
                "mode": "chat",
            }
        }
    )
    exp = ten_questions(tmp_path)
    fake.replies = ["a"] * 10  # each call: 9 tokens in, 4 out = $0.0017
    result = start_run(
        exp, Workspace(tmp_path / "ws"), RunOptions(model="fake/priced", max_cost=0.004)
    )
    assert [e["cost_usd"] for e in events(result, "llm.call")] == pytest.approx([0.0017] * 3)
    assert result.status == "failed" and len(fake.calls) == 3
    assert result.reason == "budget reached: spent $0.0051 of --max-cost $0.0040"


# -- replies that are not answers, and servers asking to wait -----------------------------------


def text_node_run(tmp_path, server_base, on_error=None):
    """A schema-less agent node (its reply text goes to `poem`), skipped when it fails."""
    node = {
        "id": "write",
        "kind": "agent",
        "prompt": "p.md",
        "writes": ["poem"],
        "on_error": on_error or {"policy": "skip"},
        "timeout_ms": 5000,
    }
    exp = build(
        tmp_path / "t", spec([node], state={"poem": {"type": "string"}}), {"p.md": "A poem"}
    )
    options = RunOptions(model="openai/evolve-test", api_base=server_base)
    return start_run(exp, Workspace(tmp_path / "ws"), options)


@pytest.mark.parametrize(
    "step, message",
    [
        (
            {"tool_calls": True},
            "openai/evolve-test: the reply is a tool call (lookup), not text; evolve offers no "
            "tools",
        ),
        ({"null_content": True}, "openai/evolve-test: the reply has no content (null)"),
    ],
    ids=["tool_calls", "null_content"],
)
def test_a_reply_without_text_is_a_bad_response_not_an_empty_success(tmp_path, step, message):
    with LoopbackServer([step]) as server:
        result = text_node_run(tmp_path, server.base)
    assert result.status == "partial"
    assert "poem" not in result.state
    failed = events(result, "node.failed")
    assert [(f["error_type"], f["error"]) for f in failed] == [("bad_response", message)]
    assert events(result, "state.write") == []


@pytest.mark.parametrize("step", [{"html": True}, {"sse": True}], ids=["html", "sse"])
def test_a_200_whose_body_is_no_completion_is_a_bad_response(tmp_path, step):
    with LoopbackServer([step]) as server:
        result = text_node_run(tmp_path, server.base)
    failed = events(result, "node.failed")
    assert [f["error_type"] for f in failed] == ["bad_response"]
    assert "Empty or invalid response from LLM endpoint" in failed[0]["error"]


RETRY = {"policy": "retry", "attempts": 2, "base_ms": 10, "then": "skip"}


@pytest.mark.parametrize(
    "step, timeout_ms, delay_ms",
    [
        ({"status": 429, "retry_after": "1"}, 5000, 1000),  # honoured
        ({"status": 503, "retry_after": "120"}, 300, 300),  # capped by the node's timeout
        ({"status": 503, "retry_after": "Wed, 21 Oct 2099 07:28:00 GMT"}, 300, 300),  # a date
    ],
    ids=["seconds", "capped", "http-date"],
)
def test_retry_after_is_honoured_up_to_the_node_timeout(tmp_path, step, timeout_ms, delay_ms):
    with LoopbackServer([step, {"json": {"verdict": "ok"}}]) as server:
        _, result = loop_run(tmp_path, server.base, {"on_error": RETRY, "timeout_ms": timeout_ms})
    assert result.status == "success", result.reason
    assert [r["delay_ms"] for r in events(result, "node.retry")] == [delay_ms]
    assert len(server.requests) == 2


def test_a_reply_holding_nan_is_not_json_and_gets_the_repair_turn(tmp_path):
    with LoopbackServer([{"text": '{"verdict": NaN}'}, {"json": {"verdict": "ok"}}]) as server:
        _, result = loop_run(tmp_path, server.base)
    assert result.status == "success", result.reason
    invalid = events(result, "schema.invalid")
    assert invalid[0]["errors"] == ["the reply is not JSON (NaN is not a JSON number)"]


def test_record_missing_makes_and_appends_only_the_calls_the_cassette_misses(tmp_path):
    exp = agent_experience(tmp_path, "Judge {{ doc.title }}")
    options = dict(model="openai/evolve-test", record_missing=True)
    with LoopbackServer([{"json": {"verdict": "ok"}}]) as server:
        first = start_run(
            exp, Workspace(tmp_path / "ws"), RunOptions(api_base=server.base, **options)
        )
        assert first.status == "success" and len(server.requests) == 1
        recorded = exp / "cassettes" / "recorded.jsonl"
        [line] = [json.loads(x) for x in recorded.read_text().splitlines()]
        assert line["node"] == "judge" and line["key"]
        # the cassette now has the call: served from it, the server sees nothing more
        again = start_run(
            exp, Workspace(tmp_path / "ws"), RunOptions(api_base=server.base, **options)
        )
        assert again.status == "success" and len(server.requests) == 1
        assert all(e["replayed"] for e in events(again, "llm.call"))
    assert len(recorded.read_text().splitlines()) == 1  # nothing appended twice


def test_a_cassette_miss_shows_a_reply_line_shaped_for_the_node(tmp_path):
    exp = agent_experience(tmp_path, "Judge {{ doc.title }}")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions(replay=empty))
    error = events(result, "node.failed")[0]["error"]
    assert '{"node": "judge", "response": {"json": {"verdict": "' in error
    assert "--record-missing" in error


def test_record_missing_with_offline_is_refused(tmp_path):
    exp = agent_experience(tmp_path, "Judge {{ doc.title }}")
    result = CliRunner().invoke(
        app, ["run", str(exp), "--offline", "--record-missing", "--workspace", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--record-missing replays the experience's cassettes" in result.output
