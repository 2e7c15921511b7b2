"""`evolve mcp`: the server driven through the MCP SDK's own client over stdio, as an agent in
another tool would: list the tools, validate, run offline (with progress), propose, diff."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from evolve.mcp_server import TOOLS
from evolve.scaffold import create_experience

pytestmark = pytest.mark.slow  # every test starts the server in a fresh interpreter


async def session_calls(cwd: Path, script: Any) -> Any:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "evolve", "mcp"],
        cwd=str(cwd),
        env={"PATH": os.environ["PATH"], "EVOLVE_MODEL": ""},
    )
    with open(cwd / "server-stderr.txt", "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await script(session)


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


def test_an_agent_lists_validates_runs_and_proposes_through_the_sdk_client(tmp_path):
    create_experience(tmp_path / "notes", "agent")
    progress: list[tuple[float, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, message))

    async def script(session: ClientSession) -> dict[str, Any]:
        listed = await session.list_tools()
        out: dict[str, Any] = {"tools": {t.name: t for t in listed.tools}}
        out["validate"] = structured(await session.call_tool("validate", {"paths": ["notes"]}))
        out["run"] = structured(
            await session.call_tool(
                "run", {"path": "notes", "offline": True}, progress_callback=on_progress
            )
        )
        out["state"] = structured(
            await session.call_tool("state", {"run_id": "last", "field": "words"})
        )
        out["runs"] = structured(await session.call_tool("runs", {}))
        out["propose"] = structured(
            await session.call_tool("propose", {"run_ids": ["last"], "offline": True})
        )
        out["diff"] = structured(await session.call_tool("diff", {"run_id": "last"}))
        out["missing"] = await session.call_tool("inspect", {"run_id": "r-nosuchrun"})
        return out

    out = asyncio.run(session_calls(tmp_path, script))
    assert sorted(out["tools"]) == sorted(TOOLS)
    run_tool = out["tools"]["run"]
    assert run_tool.input_schema["required"] == ["path"]
    assert run_tool.input_schema["properties"]["offline"]["type"] == "boolean"
    assert "status" in run_tool.output_schema["properties"]

    assert out["validate"]["valid"] is True
    assert out["validate"]["experiences"][0]["name"] == "notes"
    run = out["run"]
    assert run["status"] == "success" and run["state"]["words"] == 21
    assert [message.split(" ")[0] for _, message in progress] == [
        "load_notes",
        "summarise",
        "count_words",
    ]
    assert [done for done, _ in progress] == [1, 2, 3]
    assert out["state"] == {"run_id": run["run_id"], "value": 21}
    assert out["runs"]["runs"][0]["id"] == run["run_id"]
    proposed = out["propose"]
    assert Path(proposed["path"]).is_file()
    assert proposed["report"]["runs"] == [run["run_id"]]
    assert out["diff"]["run_id"] == run["run_id"] and out["diff"]["applies_together"] is True
    assert out["missing"].is_error
    assert "r-nosuchrun" in out["missing"].content[0].text


def test_validation_problems_come_back_located(tmp_path):
    exp = create_experience(tmp_path / "bad", "tool-only")[0].parent
    spec = exp / "experience.yaml"
    spec.write_text(spec.read_text().replace("writes: [total]", "writes: [totl]"))

    async def script(session: ClientSession) -> dict[str, Any]:
        return structured(await session.call_tool("validate", {"paths": ["bad"]}))

    result = asyncio.run(session_calls(tmp_path, script))
    assert result["valid"] is False
    [problem] = result["problems"]
    assert problem["file"].endswith("bad/experience.yaml")
    assert (problem["line"], problem["col"]) == (38, 16)  # the `totl` in `writes: [totl]`
    assert "undeclared state field 'totl'" in problem["message"]


def test_new_drafts_offline_through_the_server(tmp_path):
    async def script(session: ClientSession) -> dict[str, Any]:
        return structured(
            await session.call_tool(
                "new", {"task": "count words", "directory": "wc", "offline": True}
            )
        )

    draft = asyncio.run(session_calls(tmp_path, script))
    assert draft["valid"] is True and draft["open_questions"]
    assert (tmp_path / "wc" / "experience.yaml").is_file()


def test_without_the_sdk_the_command_says_how_to_install_it(tmp_path):
    import subprocess

    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'mcp' or name.startswith('mcp.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "evolve", "mcp"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: evolve mcp needs the MCP Python SDK, which is not installed: "
        "pip install 'evolve[mcp]'"
    )
    assert json.dumps(done.stdout) == '""'


COUNTER = """\
name: counter
version: 0.1.0
state:
  schema:
    n: {type: integer, default: 0}
    count: {type: integer, default: 0}
graph:
  nodes:
    - {id: add, kind: tool, impl: tools/add.py, reads: [n], writes: [count]}
evals:
  - {name: exact, expr: '$.count == $case.expect.count', required: true}
cases: {source: data/cases.jsonl}
"""


def test_eval_scores_every_case_with_progress_and_gates(tmp_path):
    exp = tmp_path / "counter"
    (exp / "tools").mkdir(parents=True)
    (exp / "data").mkdir()
    (exp / "experience.yaml").write_text(COUNTER)
    (exp / "tools" / "add.py").write_text(
        "def run(inputs):\n    return {'state_delta': {'count': inputs['_state']['n'] + 1}}\n"
    )
    cases = [{"id": "a", "args": {"n": 1}, "expect": {"count": 2}}]
    cases.append({"id": "b", "args": {"n": 2}, "expect": {"count": 5}})
    (exp / "data" / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async def script(session: ClientSession) -> dict[str, Any]:
        return structured(
            await session.call_tool(
                "eval",
                {"path": "counter", "offline": True, "min_pass_rate": 0.9},
                progress_callback=on_progress,
            )
        )

    result = asyncio.run(session_calls(tmp_path, script))
    suite = result["suite"]
    assert [(c["case_id"], c["passed"]) for c in suite["cases"]] == [("a", True), ("b", False)]
    assert suite["pass_rate"] == 0.5
    assert result["gates"] == ["pass rate 0.500 is below --min-pass-rate 0.9"]
    assert sorted(progress) == [(1, 2), (2, 2)]
