"""A run as an OpenTelemetry trace: the span tree of a run with a fan-out and an agent node,
live and from the event log (the SDK's in-memory exporter), and over OTLP/HTTP to a loopback
receiver (`evolve export RUN --otlp`, `evolve run --otel`)."""

from __future__ import annotations

import gzip
import http.server
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

pytest.importorskip("opentelemetry.sdk", reason="the otel extra: pip install 'evolve[otel]'")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from evolve.cli import app
from evolve.otel import Tracer, export_events
from evolve.runtime.run import RunOptions, start_run
from evolve.store.log import read_events
from evolve.store.workspace import Workspace
from helpers import build, spec, tool

runner = CliRunner()
EXAMPLE = Path(__file__).parent.parent / "examples" / "review-branch"


def tree(spans: list[Any]) -> list[tuple[str, str | None]]:
    """(name, parent's name) of every span, sorted: the shape of the trace."""
    by_id = {s.context.span_id: s for s in spans}
    return sorted((s.name, by_id[s.parent.span_id].name if s.parent else None) for s in spans)


def named(spans: list[Any], name: str) -> list[Any]:
    return [s for s in spans if s.name == name]


@pytest.fixture
def live(tmp_path):
    """review-branch run offline with the tracer as a listener: (spans, result)."""
    exp = tmp_path / "review-branch"
    shutil.copytree(EXAMPLE, exp)
    memory = InMemorySpanExporter()
    tracer = Tracer(memory, batch=False)
    options = RunOptions(offline=True, listeners=[tracer.feed])
    result = start_run(exp, Workspace(tmp_path / "ws"), options)
    tracer.close()
    return list(memory.get_finished_spans()), result


def test_the_span_tree_of_a_run_with_a_fan_out_and_an_agent(live):
    spans, result = live
    nodes = ["load_diff", "list_dimensions", "review", "verify", "score"]
    expected = [("run review-branch", None)]
    expected += [(f"node {n}", "run review-branch") for n in nodes]
    expected += [(f"attempt {n}", f"node {n}") for n in nodes if n != "review"]
    expected += [(f"attempt review[{i}]", "node review") for i in range(3)]
    expected += [("chat openai/gpt-4o-mini", f"attempt review[{i}]") for i in range(3)]
    assert tree(spans) == sorted(expected)
    assert len({s.context.trace_id for s in spans}) == 1

    [run] = named(spans, "run review-branch")
    assert run.attributes["evolve.run.id"] == result.run_id
    assert run.attributes["evolve.run.status"] == "success"
    assert run.attributes["gen_ai.usage.input_tokens"] == result.tokens_in
    assert run.resource.attributes["service.name"] == "evolve"
    [review] = named(spans, "node review")
    assert review.attributes["evolve.node.kind"] == "agent"
    assert named(spans, "node score")[0].attributes["evolve.node.kind"] == "tool"
    calls = named(spans, "chat openai/gpt-4o-mini")
    assert {c.attributes["gen_ai.system"] for c in calls} == {"openai"}
    assert {c.attributes["gen_ai.request.model"] for c in calls} == {"openai/gpt-4o-mini"}
    assert {c.attributes["gen_ai.operation.name"] for c in calls} == {"chat"}
    assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in calls) == result.tokens_in
    assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in calls) == result.tokens_out
    assert sorted(c.attributes["evolve.item"] for c in calls) == [0, 1, 2]
    for span in spans:  # children inside their parents
        if span.parent:
            parent = next(s for s in spans if s.context.span_id == span.parent.span_id)
            assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time


def test_the_trace_from_the_log_is_the_live_one(live):
    spans, result = live
    memory = InMemorySpanExporter()
    export_events(read_events(result.log_path), memory)
    later = list(memory.get_finished_spans())
    assert tree(later) == tree(spans)

    def timed(found: list[Any]) -> list[tuple[str, int, int, list[Any]]]:
        return sorted(
            (s.name, s.start_time, s.end_time, sorted(s.attributes.items())) for s in found
        )

    assert timed(later) == timed(spans)


FLAKY = "def run(i):\n    raise RuntimeError('the service is down')\n"


def test_a_failed_attempt_and_run_carry_the_error_type(tmp_path):
    document = spec(
        [tool("load", "tools/flaky.py", on_error={"policy": "retry", "attempts": 2, "base_ms": 1})]
    )
    exp = build(tmp_path / "e", document, {"tools/flaky.py": FLAKY})
    result = start_run(exp, Workspace(tmp_path / "ws"), RunOptions())
    assert result.status == "failed"
    memory = InMemorySpanExporter()
    export_events(read_events(result.log_path), memory)
    spans = list(memory.get_finished_spans())
    attempts = named(spans, "attempt load")
    assert sorted(a.attributes["evolve.attempt"] for a in attempts) == [1, 2]
    assert {a.status.status_code.name for a in attempts} == {"ERROR"}
    error_type = attempts[0].attributes["error.type"]
    assert error_type not in ("", "failed")
    [run] = named(spans, "run t")
    assert run.attributes["evolve.run.status"] == "failed"
    assert run.attributes["error.type"] == error_type
    assert run.status.status_code.name == "ERROR" and "the service is down" in (
        run.status.description or ""
    )


class Receiver(http.server.BaseHTTPRequestHandler):
    """A loopback OTLP/HTTP receiver: POST /v1/traces, protobuf, maybe gzipped."""

    received: list[Any]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).received.append((self.path, request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver():
    handler = type("Handler", (Receiver,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.received
    server.shutdown()
    server.server_close()


def span_names(received: list[Any]) -> list[str]:
    return sorted(
        span.name
        for _, request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    )


def test_export_sends_the_trace_to_an_otlp_http_receiver(live, receiver):
    spans, result = live
    url, received = receiver
    ws = result.log_path.parent.parent
    done = runner.invoke(app, ["export", result.run_id, "--otlp", url, "--workspace", str(ws)])
    assert done.exit_code == 0, done.output
    assert f"sent {len(spans)} spans of run {result.run_id} to {url}" in done.stderr
    assert {path for path, _ in received} == {"/v1/traces"}
    assert span_names(received) == sorted(s.name for s in spans)
    attributes = {
        kv.key: kv.value
        for _, request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
        if span.name.startswith("chat ")
        for kv in span.attributes
    }
    assert attributes["gen_ai.usage.input_tokens"].int_value > 0


def test_run_otel_sends_live_where_the_environment_says(tmp_path, receiver, monkeypatch):
    url, received = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    exp = tmp_path / "review-branch"
    shutil.copytree(EXAMPLE, exp)
    done = runner.invoke(app, ["run", str(exp), "--offline", "--workspace", str(tmp_path / "w")])
    assert done.exit_code == 0, done.output
    names = span_names(received)
    assert names.count("chat openai/gpt-4o-mini") == 3 and "run review-branch" in names


def test_export_needs_a_destination_and_says_when_nothing_listens(live):
    _, result = live
    ws = str(result.log_path.parent.parent)
    missing = runner.invoke(app, ["export", result.run_id, "--workspace", ws])
    assert missing.exit_code == 2 and "--otlp" in missing.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    refused = runner.invoke(
        app,
        ["export", result.run_id, "--otlp", f"http://127.0.0.1:{port}", "--workspace", ws],
        env={"OTEL_EXPORTER_OTLP_TIMEOUT": "1"},
    )
    assert refused.exit_code == 1
    assert f"the OTLP receiver at http://127.0.0.1:{port} did not take" in refused.stderr
