"""A run as an OpenTelemetry trace, live or from its event log (needs `pip install 'evolve[otel]'`).

`Tracer.feed(event)` takes the events of one run (and of its child runs) in log order, the same
dicts a run's listeners see and `read_events` yields, and turns them into spans with the times
the events carry, so a trace built live and one built later from the log are the same:

    run <experience>                      evolve.run.id, evolve.run.status, error.type, cost
      node <node id>                      evolve.node.kind, evolve.node.status
        attempt <node id>[item]           evolve.item, evolve.attempt, error.type
          chat <model>                    GenAI semantic conventions: gen_ai.system,
                                          gen_ai.request.model, gen_ai.usage.input_tokens and
                                          output_tokens; evolve.cost_usd, evolve.replayed
        run <child experience>            a nested experience, under the node that started it

Node state (kind, status, items) comes from the one fold (`evolve.view.Folder`), fed the same
events. Spans go to an OTLP/HTTP exporter (`exporter(endpoint)`: the endpoint given, else
OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as the SDK reads them, else
http://localhost:4318) or to any SpanExporter a caller passes (tests use the SDK's in-memory one).
The SDK is imported only here, and only when a trace is made; `MissingOtel` says how to install it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evolve.errors import EvolveError, UsageError
from evolve.events import EventType
from evolve.view import Folder

INSTALL = "pip install 'evolve[otel]'"
ATTEMPT_ENDS = (EventType.NODE_FINISHED, EventType.NODE_FAILED)


class MissingOtel(UsageError):
    """The optional OpenTelemetry SDK is not installed."""


def _sdk() -> Any:
    try:
        from opentelemetry.sdk import trace as sdk_trace
    except ImportError:
        raise MissingOtel(f"exporting traces needs the OpenTelemetry SDK: {INSTALL}") from None
    return sdk_trace


def exporter(endpoint: str | None = None) -> Any:
    """An OTLP/HTTP span exporter to `endpoint` (a base URL; `/v1/traces` is added when missing),
    or to where the OTEL_EXPORTER_OTLP_* environment says when `endpoint` is None."""
    _sdk()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise MissingOtel(
            f"exporting traces over OTLP/HTTP needs the exporter: {INSTALL}"
        ) from None
    if endpoint is None:
        return OTLPSpanExporter()
    url = endpoint.rstrip("/")
    return OTLPSpanExporter(endpoint=url if url.endswith("/v1/traces") else f"{url}/v1/traces")


def _ns(ts: str) -> int:
    return int(datetime.fromisoformat(ts).timestamp() * 1_000_000_000)


def _system(model: str) -> str:
    """gen_ai.system from a litellm model string: its provider prefix (`openai/gpt-4o`)."""
    return model.split("/", 1)[0] if "/" in model else "openai"


@dataclass
class _RunSpans:
    folder: Folder
    span: Any
    nodes: dict[str, Any] = field(default_factory=dict)
    attempts: dict[tuple[str, int | None], Any] = field(default_factory=dict)


class Tracer:
    """Spans from events, sent through `span_exporter` (a batch processor unless `batch=False`)."""

    def __init__(self, span_exporter: Any, *, batch: bool = True) -> None:
        sdk_trace = _sdk()
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        from evolve import __version__

        resource = Resource.create({"service.name": "evolve", "service.version": __version__})
        self.provider = sdk_trace.TracerProvider(resource=resource)
        processor = BatchSpanProcessor if batch else SimpleSpanProcessor
        self.provider.add_span_processor(processor(span_exporter))
        self.tracer = self.provider.get_tracer("evolve", __version__)
        self.runs: dict[str, _RunSpans] = {}
        self.last_ns = 0

    # -- feeding ---------------------------------------------------------------------------------

    def feed(self, e: dict[str, Any]) -> None:
        """One event of a run (a listener of the run's event log)."""
        at = _ns(e["ts"])
        self.last_ns = max(self.last_ns, at)
        if e["type"] == EventType.RUN_STARTED:
            self._run_started(e, at)
            return
        run = self.runs.get(e["run_id"])
        if run is None:  # a log read from its middle: nothing to hang the span on
            return
        run.folder.feed(e)
        if e["type"] == EventType.RUN_FINISHED:
            self._run_finished(run, e, at)
            return
        node_id = e.get("node_id")
        if not node_id or node_id.startswith("eval:"):
            if e["type"] == EventType.LLM_CALL:  # a judge's call: under the run
                self._model_call(run, run.span, e, at)
            return
        self._node_event(run, node_id, e, at)

    def close(self) -> None:
        """End what is still open (a run killed before `run.finished`), send, and shut down."""
        for run in list(self.runs.values()):
            self._end_run(run, self.last_ns, "interrupted", None)
        self.provider.force_flush()
        self.provider.shutdown()

    # -- spans -----------------------------------------------------------------------------------

    def _context(self, span: Any) -> Any:
        from opentelemetry import trace

        return trace.set_span_in_context(span)

    def _run_started(self, e: dict[str, Any], at: int) -> None:
        parent = None
        outer = self.runs.get(e.get("parent_run_id") or "")
        if outer is not None:
            node = e.get("parent_node") or ""
            parent = next(
                (s for (n, _), s in outer.attempts.items() if n == node),
                outer.nodes.get(node, outer.span),
            )
        span = self.tracer.start_span(
            f"run {e.get('experience', '')}",
            context=self._context(parent) if parent is not None else None,
            start_time=at,
            attributes={
                "evolve.run.id": e["run_id"],
                "evolve.experience": e.get("experience", ""),
                **({"evolve.parent_run.id": e["parent_run_id"]} if e.get("parent_run_id") else {}),
            },
        )
        folder = Folder()
        folder.feed(e)
        self.runs[e["run_id"]] = _RunSpans(folder, span)

    def _node_span(self, run: _RunSpans, node_id: str, at: int) -> Any:
        span = run.nodes.get(node_id)
        if span is None:
            view = run.folder.view.nodes.get(node_id)
            span = run.nodes[node_id] = self.tracer.start_span(
                f"node {node_id}",
                context=self._context(run.span),
                start_time=at,
                attributes={
                    "evolve.run.id": run.folder.view.run_id,
                    "evolve.node.id": node_id,
                    "evolve.node.kind": view.kind if view else "tool",
                },
            )
        return span

    def _node_event(self, run: _RunSpans, node_id: str, e: dict[str, Any], at: int) -> None:
        kind = e["type"]
        node_span = self._node_span(run, node_id, at)
        key = (node_id, e.get("item"))
        if kind == EventType.NODE_STARTED:
            item = e.get("item")
            name = f"attempt {node_id}" + (f"[{item}]" if item is not None else "")
            attributes = {
                "evolve.run.id": run.folder.view.run_id,
                "evolve.node.id": node_id,
                "evolve.attempt": e.get("attempt", 1),
            }
            if item is not None:
                attributes["evolve.item"] = item
            run.attempts[key] = self.tracer.start_span(
                name, context=self._context(node_span), start_time=at, attributes=attributes
            )
        elif kind in ATTEMPT_ENDS and "attempt" in e:
            span = run.attempts.pop(key, None)
            if span is not None:
                self._end(span, at, "succeeded" if kind == EventType.NODE_FINISHED else "failed", e)
        elif kind == EventType.LLM_CALL:
            self._model_call(run, run.attempts.get(key, node_span), e, at)
        view = run.folder.view.nodes.get(node_id)
        whole_end = kind in ATTEMPT_ENDS and "attempt" not in e
        settled = view is not None and view.status in ("succeeded", "failed", "skipped")
        if whole_end or (settled and (view is None or view.kind != "loop")):
            if kind == EventType.NODE_SKIPPED and e.get("item") is not None:
                return  # one item skipped: the node goes on
            span = run.nodes.get(node_id)
            if (
                span is not None
                and span.is_recording()
                and (whole_end or not self._open(run, node_id))
            ):
                status = view.status if view is not None else "succeeded"
                self._end(span, at, status, {"error": view.reason if view else None})

    def _open(self, run: _RunSpans, node_id: str) -> bool:
        return any(n == node_id for n, _ in run.attempts)

    def _model_call(self, run: _RunSpans, parent: Any, e: dict[str, Any], at: int) -> None:
        model = e.get("model") or ""
        start = at - int((e.get("duration_ms") or 0) * 1_000_000)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": _system(model),
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": e.get("tokens_in") or 0,
            "gen_ai.usage.output_tokens": e.get("tokens_out") or 0,
            "evolve.run.id": run.folder.view.run_id,
            "evolve.node.id": e.get("node_id", ""),
            "evolve.replayed": bool(e.get("replayed")),
        }
        if e.get("cost_usd") is not None:
            attributes["evolve.cost_usd"] = e["cost_usd"]
        if e.get("item") is not None:
            attributes["evolve.item"] = e["item"]
        span = self.tracer.start_span(
            f"chat {model}", context=self._context(parent), start_time=start, attributes=attributes
        )
        failed = e.get("error_type")
        self._end(span, at, "failed" if failed else "succeeded", e)

    def _run_finished(self, run: _RunSpans, e: dict[str, Any], at: int) -> None:
        self._end_run(run, at, e.get("status", "success"), e.get("reason"))

    def _end_run(self, run: _RunSpans, at: int, status: str, reason: str | None) -> None:
        for span in [*run.attempts.values(), *run.nodes.values()]:
            if span.is_recording():
                self._end(span, at, "interrupted" if status == "interrupted" else "cut short", {})
        run.attempts.clear()
        view = run.folder.view
        span = run.span
        if not span.is_recording():
            return
        span.set_attribute("evolve.run.status", status)
        span.set_attribute("gen_ai.usage.input_tokens", view.tokens_in)
        span.set_attribute("gen_ai.usage.output_tokens", view.tokens_out)
        if view.cost_usd is not None:
            span.set_attribute("evolve.cost_usd", view.cost_usd)
        if view.score is not None:
            span.set_attribute("evolve.score", view.score)
        failure = view.failures[-1].error_type if view.failures else None
        ok = status in ("success", "partial")
        self._end(
            span, at, "succeeded" if ok else "failed", {"error": reason, "error_type": failure}
        )
        self.runs.pop(view.run_id, None)

    def _end(self, span: Any, at: int, status: str, e: dict[str, Any]) -> None:
        from opentelemetry.trace import Status, StatusCode

        if not span.is_recording():
            return
        if "evolve.run.status" not in getattr(span, "attributes", {}):
            span.set_attribute("evolve.status", status)
        if status not in ("succeeded", "success", "skipped"):
            error_type = e.get("error_type") or status.replace(" ", "_")
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, e.get("error") or status))
        span.end(end_time=max(at, span.start_time or at))


def export_events(events: Iterable[dict[str, Any]], span_exporter: Any) -> int:
    """Send the trace of one run's events (its log) through `span_exporter`; the number of
    events read."""
    tracer = Tracer(span_exporter, batch=False)
    count = 0
    for event in events:
        tracer.feed(event)
        count += 1
    tracer.close()
    return count


@dataclass(frozen=True)
class Sent:
    run_id: str
    spans: int
    endpoint: str


class _Counting:
    """A span exporter that counts what it passes on."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.spans, self.failed = inner, 0, 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        result = self.inner.export(spans)
        if result == SpanExportResult.SUCCESS:
            self.spans += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def run_events(workspace: Any, run_id: str) -> Iterable[dict[str, Any]]:
    """A run's events and those of its child runs (nested experiences), in time order: what
    the run's listeners saw live."""
    import heapq

    from evolve.store.log import read_events
    from evolve.store.queries import RunQueries, open_store

    store = open_store(workspace)
    try:
        queries = RunQueries(store)
        row = queries.resolve(run_id)
        ids, todo = [row["id"]], [row["id"]]
        while todo:
            children = [c["id"] for c in queries.children(todo.pop())]
            ids += children
            todo += children
    finally:
        store.close()
    logs = [workspace.log_path(i) for i in ids if workspace.log_path(i).is_file()]
    if not logs:
        raise UsageError(f"run {row['id']} has no event log in {workspace.runs_dir}")
    return heapq.merge(*(read_events(p) for p in logs), key=lambda e: (_ns(e["ts"]), e["seq"]))


def export_run(workspace: Any, run_id: str, endpoint: str | None) -> Sent:
    """Send run `run_id` (and its child runs), read from the event logs, over OTLP/HTTP."""
    import os

    events = run_events(workspace, run_id)
    first = next(iter(events), None)
    sink = _Counting(exporter(endpoint))
    tracer = Tracer(sink, batch=False)
    if first is not None:
        tracer.feed(first)
        for event in events:
            tracer.feed(event)
    tracer.close()
    where = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
    if sink.failed:
        raise EvolveError(
            f"the OTLP receiver at {where} did not take {sink.failed} of "
            f"{sink.failed + sink.spans} spans: is a collector listening there (OTLP over HTTP)?"
        )
    return Sent(first["run_id"] if first else run_id, sink.spans, where)
