"""Dataset `source: {type: http}`: fetched from a loopback server, retried under the node's
policy, headers from the environment never stored, recorded and replayed offline."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import build, events, run, spec


class RowServer:
    """Serves a script of (status, body) replies to GETs and keeps each request's headers."""

    def __init__(self, script: list[tuple[int, str]]):
        self.script = list(script)
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.headers.append(dict(self.headers))
                status, body = server.script.pop(0) if server.script else (404, "gone")
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rows"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    made: list[RowServer] = []

    def start(*script: tuple[int, str]) -> RowServer:
        made.append(RowServer(list(script)))
        return made[-1]

    yield start
    for s in made:
        s.close()


def experience(root: Path, url: str, **source: Any) -> Path:
    node = {
        "id": "fetch",
        "kind": "dataset",
        "source": {"type": "http", "url": url, **source},
        "writes": ["rows"],
        "on_error": {"policy": "retry", "attempts": 3, "base_ms": 1},
    }
    return build(root, spec([node], state={"rows": {"type": "array"}}))


def test_rows_come_from_the_url_with_headers_from_the_environment(tmp_path, server, monkeypatch):
    monkeypatch.setenv("ROWS_API_TOKEN", "s3cret-token-value")
    srv = server((200, json.dumps([{"id": 1}, {"id": 2}])))
    exp = experience(
        tmp_path / "exp", srv.url, headers={"Authorization": "Bearer ${ROWS_API_TOKEN}"}
    )
    cassette = tmp_path / "rec.jsonl"
    result = run(exp, tmp_path / "ws", record=cassette)
    assert result.status == "success", result.reason
    assert result.state["rows"] == [{"id": 1}, {"id": 2}]
    assert srv.headers[0]["Authorization"] == "Bearer s3cret-token-value"
    [call] = events(result, "http.call")
    assert call["status"] == 200 and call["replayed"] is False
    # the header is kept as written, its value nowhere
    assert "s3cret-token-value" not in cassette.read_text()
    assert "${ROWS_API_TOKEN}" in cassette.read_text()
    assert "s3cret-token-value" not in result.log_path.read_text()


def test_server_errors_are_retried_under_the_node_policy(tmp_path, server):
    srv = server((503, "busy"), (429, "slow down"), (200, "a,b\n1,2\n"))
    exp = experience(tmp_path / "exp", srv.url, format="csv")
    result = run(exp, tmp_path / "ws")
    assert result.status == "success", result.reason
    assert result.state["rows"] == [{"a": "1", "b": "2"}]
    assert [e["error_type"] for e in events(result, "node.failed")] == [
        "server_error",
        "rate_limit",
    ]
    assert len(events(result, "node.retry")) == 2


def test_an_unauthorised_reply_is_not_retried(tmp_path, server):
    srv = server((401, "who are you"))
    result = run(experience(tmp_path / "exp", srv.url), tmp_path / "ws")
    assert result.status == "failed"
    [failed] = events(result, "node.failed")
    assert failed["error_type"] == "auth" and "HTTP 401" in failed["error"]


def test_a_missing_environment_variable_is_named_and_not_retried(tmp_path, server, monkeypatch):
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    srv = server((200, "[]"))
    exp = experience(tmp_path / "exp", srv.url, headers={"X-Key": "${NOPE_TOKEN}"})
    result = run(exp, tmp_path / "ws")
    [failed] = events(result, "node.failed")
    assert failed["error_type"] == "missing_env" and "NOPE_TOKEN" in failed["error"]
    assert srv.headers == []  # nothing was sent


def test_a_refused_connection_is_a_connection_error(tmp_path, server):
    srv = server()
    url = srv.url
    srv.close()
    result = run(experience(tmp_path / "exp", url), tmp_path / "ws")
    assert [e["error_type"] for e in events(result, "node.failed")] == ["connection"] * 3


def test_a_body_that_is_not_the_format_fails_clearly(tmp_path, server):
    srv = server((200, "not json"))
    result = run(experience(tmp_path / "exp", srv.url), tmp_path / "ws")
    assert "is not json" in events(result, "node.failed")[0]["error"]


def test_a_recorded_fetch_replays_with_the_server_gone(tmp_path, server):
    srv = server((200, '{"id": 7}\n{"id": 8}\n'))
    exp = experience(tmp_path / "exp", srv.url, format="jsonl")
    run(exp, tmp_path / "ws", record=exp / "cassettes" / "fetch.jsonl")
    srv.close()
    replayed = run(exp, tmp_path / "ws", offline=True)
    assert replayed.status == "success", replayed.reason
    assert replayed.state["rows"] == [{"id": 7}, {"id": 8}]
    assert events(replayed, "http.call")[0]["replayed"] is True


def test_the_url_must_be_http(tmp_path):
    from evolve.errors import SpecError
    from evolve.spec import load_experience

    exp = experience(tmp_path / "exp", "file:///etc/passwd")
    with pytest.raises(SpecError, match=r"source\.url"):
        load_experience(exp)
