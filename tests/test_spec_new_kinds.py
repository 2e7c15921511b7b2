"""Validation of cli-agent nodes and http dataset sources: each problem located file:line:col."""

from __future__ import annotations

from tests.helpers import build
from typer.testing import CliRunner

from evolve.cli import app

SPEC = """\
name: t
version: 0.1.0
state:
  schema:
    topic: {type: string, default: x}
    out: {type: string}
    rows: {type: array}
graph:
  nodes:
    - id: both
      kind: cli-agent
      provider: codex
      command: [mycli]
      prompt: prompts/p.md
      workdir: work
      reads: [topic]
      writes: [out]
    - id: outside
      kind: cli-agent
      provider: gemini
      prompt: prompts/p.md
      workdir: ../elsewhere
      reads: [topic]
      writes: [out]
    - id: text_schema
      kind: cli-agent
      command: [mycli]
      prompt: prompts/p.md
      workdir: $.nope
      schema: {type: object}
      reads: [topic]
      writes: [out]
    - id: neither
      kind: cli-agent
      prompt: prompts/p.md
      workdir: work
      provider: claude
      reads: [topic]
      writes: [out]
    - id: fetch
      kind: dataset
      source: {type: http, url: "ftp://example.com/x", uri: data.json}
      writes: [rows]
"""


def test_cli_agent_and_http_problems_are_located(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build(tmp_path / "exp", SPEC, {"prompts/p.md": "About {{ topic }}.\n"})
    result = CliRunner().invoke(app, ["validate", "exp"])
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        "exp/experience.yaml:13:7: node 'both' needs exactly one of provider (claude-code, "
        "codex, gemini) and command [$.graph.nodes[0].command]",
        "exp/experience.yaml:22:16: workdir '../elsewhere' is outside the experience directory "
        "(give a path inside it, or $.field to take one from state) [$.graph.nodes[1].workdir]",
        "exp/experience.yaml:29:16: '$.nope' reads undeclared state field 'nope' "
        "[$.graph.nodes[2].workdir]",
        "exp/experience.yaml:30:7: node 'text_schema' has an output schema, so it needs "
        "output_format: json [$.graph.nodes[2].schema]",
        "exp/experience.yaml:37:17: 'provider' of node 'neither' is 'claude'; expected one of: "
        "claude-code, codex, gemini; did you mean 'claude-code'? [$.graph.nodes[3].provider]",
        "exp/experience.yaml:42:33: 'source.url' of node 'fetch' is 'ftp://example.com/x'; it "
        "must be an http:// or https:// URL [$.graph.nodes[4].source.url]",
        "exp/experience.yaml:42:56: unknown key 'uri' in 'source' of node 'fetch'; did you mean "
        "'url'? [$.graph.nodes[4].source.uri]",
    ]
