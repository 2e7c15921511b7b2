"""Secrets (SPEC §8): values of secret-looking environment variables never appear in the event
log, the state store, cassettes, proposals or what the advisor sends to a model.

Redaction works on values, before they are encoded: a number equal to a numeric secret and a
string holding one (quotes and backslashes included) are replaced, and previews are cut after
redaction, so no prefix of a long token is left behind.
"""

from __future__ import annotations

import json
import os
import sqlite3

from typer.testing import CliRunner

from evolve import jsonvalue
from evolve.advisor.propose import propose
from evolve.cli import app
from evolve.redaction import Redactor
from evolve.store.workspace import Workspace
from fakes import ScriptedModel
from helpers import build, events, run, spec, tool

runner = CliRunner()


def writes(field: str, expr: str) -> str:
    return f"import os\n\ndef run(inputs):\n    return {{'state_delta': {{'{field}': {expr}}}}}\n"


def dump(workspace) -> str:
    return "\n".join(sqlite3.connect(workspace / "state.sqlite").iterdump())


# -- the redactor ------------------------------------------------------------------------------


def test_a_number_equal_to_a_numeric_secret_is_replaced_and_the_json_stays_valid():
    redactor = Redactor({"MY_TOKEN": "424242"})
    value = {"n": 424242, "f": 424242.0, "s": "id 424242 ok", "other": 42, "flag": True}
    clean = redactor.value(value)
    assert clean == {
        "n": "[REDACTED:MY_TOKEN]",
        "f": "[REDACTED:MY_TOKEN]",
        "s": "id [REDACTED:MY_TOKEN] ok",
        "other": 42,
        "flag": True,
    }
    assert json.loads(jsonvalue.dumps(clean)) == clean
    assert value["n"] == 424242  # the caller's value is left alone


def test_a_secret_holding_quotes_or_backslashes_is_matched():
    secret = "pa\"ss\\wo'rd-99"
    redactor = Redactor({"DB_PASSWORD": secret})
    clean = redactor.value({"rows": [f"login with {secret}", secret], secret: "as a key"})
    assert clean == {
        "rows": ["login with [REDACTED:DB_PASSWORD]", "[REDACTED:DB_PASSWORD]"],
        "[REDACTED:DB_PASSWORD]": "as a key",
    }
    # free text that quotes it JSON-escaped or repr-escaped is matched too
    assert secret not in redactor.text(json.dumps(secret)) + redactor.text(repr(secret))
    assert "[REDACTED:DB_PASSWORD]" in redactor.text(json.dumps({"k": secret}))


def test_values_that_are_not_json_types_are_redacted_as_their_text():
    from pathlib import Path

    redactor = Redactor({"X_TOKEN": "abcdef123"})
    assert redactor.value({"p": Path("/tmp/abcdef123/x")}) == {"p": "/tmp/[REDACTED:X_TOKEN]/x"}


# -- through a run -----------------------------------------------------------------------------


def test_a_numeric_secret_neither_breaks_the_run_nor_what_reads_it_later(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "424242")
    monkeypatch.chdir(tmp_path)
    exp = build(
        tmp_path / "x",
        spec(
            [tool("a", "tools/a.py", writes=["n", "items"])],
            state={"n": {"type": "number"}, "items": {"type": "array"}},
        ),
        {"tools/a.py": writes("n", "424242, 'items': [1, 424242, {'k': 424242}]")},
    )
    ran = runner.invoke(app, ["run", str(exp)])
    assert ran.exit_code == 0, ran.output
    assert "Traceback" not in ran.output
    ws = tmp_path / ".evolve"
    [log] = (ws / "runs").glob("*.jsonl")
    for line in log.read_text().splitlines():
        json.loads(line)  # every line is still JSON
    assert "424242" not in log.read_text()
    assert "424242" not in dump(ws)
    state = runner.invoke(app, ["state", "last", "--json"])
    assert state.exit_code == 0, state.output
    assert json.loads(state.stdout)["n"] == "[REDACTED:MY_TOKEN]"
    inspected = runner.invoke(app, ["inspect", "last", "--json"])
    assert inspected.exit_code == 0, inspected.output
    json.loads(inspected.stdout)
    proposed = runner.invoke(app, ["propose", "last", "--no-llm"])
    assert proposed.exit_code == 0, proposed.output


def test_a_secret_with_quotes_and_backslashes_never_reaches_the_log_or_the_store(
    tmp_path, monkeypatch
):
    secret = 'pa"ss\\word-99'
    monkeypatch.setenv("DB_PASSWORD", secret)
    exp = build(
        tmp_path / "x",
        spec([tool("a", "tools/a.py", writes=["t"])], state={"t": {"type": "string"}}),
        {"tools/a.py": writes("t", "'dsn: ' + os.environ['DB_PASSWORD']")},
    )
    result = run(exp, tmp_path / "ws")
    assert result.status == "success"
    text, stored = result.log_path.read_text(), dump(tmp_path / "ws")
    for form in (secret, json.dumps(secret)[1:-1]):
        assert form not in text and form not in stored
    assert events(result, "state.write")[0]["value_preview"] == "dsn: [REDACTED:DB_PASSWORD]"


def test_a_long_token_leaves_no_prefix_in_the_preview(tmp_path, monkeypatch):
    secret = "tok_" + "".join(f"{i:03d}" for i in range(100))  # 304 characters
    monkeypatch.setenv("LONG_API_TOKEN", secret)
    exp = build(
        tmp_path / "x",
        spec([tool("a", "tools/a.py", writes=["t"])], state={"t": {"type": "string"}}),
        {"tools/a.py": writes("t", "os.environ['LONG_API_TOKEN']")},
    )
    result = run(exp, tmp_path / "ws")
    assert result.status == "success"
    text = result.log_path.read_text()
    assert secret[:12] not in text
    assert events(result, "state.write")[0]["value_preview"] == "[REDACTED:LONG_API_TOKEN]"


# -- the advisor -------------------------------------------------------------------------------

SECRET = "sk-live-9c1e7e0b4a2d"


def advisor_experience(tmp_path):
    nodes = [
        tool("load", "tools/load.py", writes=["doc"]),
        {
            "id": "summarise",
            "kind": "agent",
            "prompt": "prompts/sum.md",
            "reads": ["doc"],
            "writes": ["summary"],
        },
    ]
    document = spec(
        nodes,
        [{"from": "load", "to": "summarise"}],
        name="x",
        state={"doc": {"type": "string"}, "summary": {"type": "string"}},
        runtime={"model": "fake/m"},
    )
    files = {
        # a key pasted into a tool (it happens): the model must not receive it
        "tools/load.py": f"KEY = '{SECRET}'\n\ndef run(i):\n"
        "    return {'state_delta': {'doc': 'text'}}\n",
        "prompts/sum.md": "Summarise: {{ doc }}\n",
    }
    return build(tmp_path / "x", document, files)


QUOTING = {
    "operation": "tune-param",
    "title": f"Rotate {SECRET}",
    "confidence": "low",
    "rationale": f"The key {SECRET} is in the source.",
    "evidence": [SECRET],
    "edits": [{"file": "experience.yaml", "search": "model: fake/m", "replace": "model: fake/m2"}],
}


def test_proposals_and_what_the_advisor_sends_are_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_API_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    exp = advisor_experience(tmp_path)
    result = run(exp, tmp_path / ".evolve", ScriptedModel(["a summary"]))
    assert result.status == "success", result.reason
    model = ScriptedModel([{"proposals": [QUOTING]}])
    report = propose(Workspace(tmp_path / ".evolve"), [], model_client=model)
    sent = json.dumps([m for call in model.calls for m in call.messages])
    assert SECRET not in sent
    assert "[REDACTED:ACME_API_KEY]" in sent
    assert [p.title for p in report.proposals] == ["Rotate [REDACTED:ACME_API_KEY]"]
    md, js = report.path.read_text(), report.path.with_suffix(".json").read_text()
    assert SECRET not in md and SECRET not in js
    assert "The key [REDACTED:ACME_API_KEY] is in the source." in md


def test_what_propose_prints_is_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_API_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    exp = advisor_experience(tmp_path)
    # the advisor's reply, replayed offline, quotes the secret back
    line = json.dumps({"node": "advisor", "response": {"json": {"proposals": [QUOTING]}}})
    (exp / "cassettes").mkdir()
    (exp / "cassettes" / "replies.jsonl").write_text(line + "\n")
    assert run(exp, tmp_path / ".evolve", ScriptedModel(["a summary"])).status == "success"
    for args in (["propose", "last", "--offline"], ["propose", "last", "--offline", "--json"]):
        printed = runner.invoke(app, args)
        assert printed.exit_code == 0, printed.output
        assert SECRET not in printed.output
        assert "Rotate [REDACTED:ACME_API_KEY]" in printed.stdout


def test_a_proposal_whose_diff_holds_a_secret_is_set_aside(tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_API_KEY", SECRET)
    exp = advisor_experience(tmp_path)
    run(exp, tmp_path / "ws", ScriptedModel(["a summary"]))
    leak = {
        **QUOTING,
        "title": "Add the key",
        "rationale": "r",
        "edits": [{"file": "notes.md", "content": f"key: {SECRET}\n"}],
    }
    report = propose(
        Workspace(tmp_path / "ws"),
        [],
        model_client=ScriptedModel([{"proposals": [leak]}, {"proposals": [leak]}]),
    )
    assert report.proposals == []
    assert "the value of ACME_API_KEY" in report.rejected[0].reason
    assert SECRET not in report.path.read_text()


def test_the_advisor_never_reads_through_a_link_that_leaves_the_experience(tmp_path):
    from evolve.advisor.llm_advisor import sources
    from evolve.spec import load_experience

    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "private.txt").write_text("do not send\n")
    (outside / "dir" / "also.txt").write_text("do not send either\n")
    exp = advisor_experience(tmp_path)
    os.symlink(outside / "private.txt", exp / "notes.txt")
    os.symlink(outside / "dir", exp / "more")
    os.symlink(exp / "prompts" / "sum.md", exp / "inside.md")  # inside: fine
    found = sources(load_experience(exp))
    assert "notes.txt" not in found and not any(k.startswith("more/") for k in found)
    assert found["inside.md"] == "Summarise: {{ doc }}\n"
    assert "do not send" not in json.dumps(found)


def test_the_start_of_a_long_secret_cut_off_elsewhere_is_replaced():
    secret = "ghp_" + "x7Kq" * 20
    redactor = Redactor({"GITHUB_TOKEN": secret})
    cut = f"printed output that is not JSON: {secret[:40]!r}"
    assert redactor.text(cut) == "printed output that is not JSON: '[REDACTED:GITHUB_TOKEN]'"
    assert redactor.value({"e": secret[:13] + " and " + secret}) == {
        "e": "[REDACTED:GITHUB_TOKEN] and [REDACTED:GITHUB_TOKEN]"
    }
    assert redactor.text(secret[:11]) == secret[:11]  # too short to tell from chance


def test_a_tool_error_quoting_a_cut_token_leaves_no_prefix(tmp_path, monkeypatch):
    secret = "ghp_" + "x7Kq" * 60  # 244 characters: any quote of it is cut
    monkeypatch.setenv("GITHUB_TOKEN", secret)
    exp = build(
        tmp_path / "x",
        spec([tool("a", "tools/a.sh", on_error={"policy": "skip"})]),
        {"tools/a.sh": '#!/bin/sh\necho "token: $GITHUB_TOKEN"\n'},
    )
    result = run(exp, tmp_path / "ws")
    assert result.status == "partial"
    [failed] = events(result, "node.failed")
    assert failed["error_type"] == "bad_output" and "[REDACTED:GITHUB_TOKEN]" in failed["error"]
    assert secret[:12] not in result.log_path.read_text()
    assert secret[:12] not in dump(tmp_path / "ws")
