"""A loopback OpenAI-compatible server for tests: scripted replies, a log of requests.

Each script entry is one of:
  {"json": obj}  or  {"text": "..."}      a 200 chat completion whose content is that
  {"status": 429}                          an error status with an OpenAI-style error body
  {"status": 429, "retry_after": "2"}      ... with a Retry-After header
  {"slow": seconds, "text": "..."}        a reply after a delay
  {"malformed": True}                      a 200 whose body is not JSON
  {"html": True}                           a 200 whose body is an HTML page (a proxy's login page)
  {"sse": True}                            a 200 whose body is a server-sent event stream
  {"tool_calls": True}                     a 200 chat completion asking for a tool call, no text
  {"null_content": True}                   a 200 chat completion whose content is null
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackServer:
    def __init__(self, script: list[dict[str, Any]] | None = None):
        self.script = list(script or [])
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                step = server.script.pop(0) if server.script else {"text": "(no script left)"}
                if "slow" in step:
                    time.sleep(step["slow"])
                if "status" in step:
                    headers = {"Retry-After": step["retry_after"]} if "retry_after" in step else {}
                    error = {"message": f"scripted {step['status']}", "type": "server_error"}
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
