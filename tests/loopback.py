"""A loopback OpenAI-compatible server for tests: scripted replies, a log of requests.

Each script entry is one of:
  {"json": obj}  or  {"text": "..."}      a 200 chat completion whose content is that
  {"status": 429}                          an error status with an OpenAI-style error body
  {"status": 429, "retry_after": "2"}      ... with a Retry-After header
  {"status": 400, "message": "..."}        ... with that error message
  {"slow": seconds, "text": "..."}        a reply after a delay
  {"malformed": True}                      a 200 whose body is not JSON
  {"html": True}                           a 200 whose body is an HTML page (a proxy's login page)
  {"sse": True}                            a 200 whose body is a server-sent event stream
  {"tool_calls": True}                     a 200 chat completion asking for a tool call, no text
  {"null_content": True}                   a 200 chat completion whose content is null

`refuse_formats` makes the server refuse requests whose `response_format` type is in it (with
`refuse_status`, 400 by default; a 422 gets a FastAPI-style body naming the field) without
using a script entry, as servers without that structured output mode do. `props` is served at
`GET /props` (as llama.cpp's server does) and `models` at `GET /v1/models`.
With `respond`, each request's step is `respond(body)` instead of the next script entry.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackServer:
    def __init__(
        self,
        script: list[dict[str, Any]] | None = None,
        *,
        refuse_formats: tuple[str, ...] = (),
        refuse_status: int = 400,
        props: dict[str, Any] | None = None,
        models: dict[str, Any] | None = None,
        respond: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ):
        self.script = list(script or [])
        self.respond = respond  # when given: the step for a request, computed from its body
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.refused: list[str] = []  # the formats refused, in order
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = {"/props": props, "/v1/models": models}.get(self.path)
                if found is None:
                    self._send(404, {"detail": "Not Found"})
                else:
                    self._send(200, found)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                kind = (body.get("response_format") or {}).get("type")
                if kind in refuse_formats:
                    server.refused.append(kind)
                    self._refuse(kind)
                    return
                if server.respond is not None:
                    step = server.respond(body)
                elif server.script:
                    step = server.script.pop(0)
                else:
                    step = {"text": "(no script left)"}
                if "slow" in step:
                    time.sleep(step["slow"])
                if "status" in step:
                    headers = {"Retry-After": step["retry_after"]} if "retry_after" in step else {}
                    message = step.get("message", f"scripted {step['status']}")
                    error = {"message": message, "type": "server_error"}
                    self._send(step["status"], {"error": {**error, "code": None}}, headers)
                elif step.get("malformed"):
                    self._raw(200, b"{this is not json")
                elif step.get("html"):
                    page = b"<!doctype html><html><body><h1>Sign in</h1></body></html>"
                    self._raw(200, page, "text/html; charset=utf-8")
                elif step.get("sse"):
                    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": []}
                    stream = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
                    self._raw(200, stream, "text/event-stream")
                else:
                    message: dict[str, Any] = {"role": "assistant"}
                    if step.get("tool_calls"):
                        call = {"name": "lookup", "arguments": '{"q": "x"}'}
                        message["content"] = None
                        message["tool_calls"] = [
                            {"id": "call_1", "type": "function", "function": call}
                        ]
                    elif step.get("null_content"):
                        message["content"] = None
                    else:
                        message["content"] = (
                            json.dumps(step["json"]) if "json" in step else step["text"]
                        )
                    self._send(
                        200,
                        {
                            "id": "chatcmpl-test",
                            "object": "chat.completion",
                            "created": 1,
                            "model": body.get("model", "m"),
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "tool_calls"
                                    if step.get("tool_calls")
                                    else "stop",
                                    "message": message,
                                }
                            ],
                            "usage": {
                                "prompt_tokens": 11,
                                "completion_tokens": 7,
                                "total_tokens": 18,
                            },
                        },
                    )

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                self._raw(status, json.dumps(payload).encode(), headers=headers)

            def _raw(
                self,
                status: int,
                data: bytes,
                content_type: str = "application/json",
                headers: dict[str, str] | None = None,
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def _refuse(self, kind: str) -> None:
                message = f"response_format type '{kind}' is not supported by this server"
                if refuse_status == 422:
                    detail = [{"loc": ["body", "response_format"], "msg": message}]
                    self._send(422, {"detail": detail})
                else:
                    error = {"message": message, "type": "invalid_request_error", "code": None}
                    self._send(refuse_status, {"error": error})

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
