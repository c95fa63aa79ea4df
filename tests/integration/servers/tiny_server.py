"""A tiny OpenAI-shaped server for the process backend's tests (stdlib only).

Answers ``/health``, ``GET /v1/models`` and ``POST /v1/chat/completions`` (echoing the
last user message after its ``--name``; streamed in chunked SSE with ``stream: true``),
and misbehaves on request: exits at start, never becomes healthy, dies later, ignores
SIGTERM, forks a grandchild, fails a share of its answers with a 500.

Request fields that script one answer (a real client sends them as extra body fields):
``tiny_chunks`` (stream this many chunks, default 3), ``tiny_chunk_seconds`` (pause
between them), ``tiny_die_after`` (the process exits after this many chunks, as a
crashing model server does mid-stream), ``tiny_error`` (``"traceback"``: a 500 with a
plain-text Python traceback and file paths; ``"openai"``: a 400 in OpenAI's error shape
whose message holds a file path; ``"html"``: a 502 page).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="tiny")
    parser.add_argument("--exit-at-start", type=int, metavar="CODE")
    parser.add_argument("--never-healthy", action="store_true")
    parser.add_argument("--die-after", type=float, metavar="SECONDS")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--fork-grandchild", action="store_true")
    parser.add_argument("--fail-requests", type=float, default=0.0, metavar="FRACTION")
    parser.add_argument("--tag", help="ignored: lets a test run find its own servers")
    args = parser.parse_args()

    if args.exit_at_start is not None:
        print(f"{args.name}: cannot open the weights, exiting with {args.exit_at_start}")
        sys.stdout.flush()
        sys.exit(args.exit_at_start)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.fork_grandchild:
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(f"grandchild {worker.pid}", flush=True)

    calls = 0
    lock = threading.Lock()

    def should_fail() -> bool:
        """Exactly ``--fail-requests`` of the answers so far fail, evenly spread."""
        nonlocal calls
        with lock:
            calls += 1
            share = args.fail_requests
            return int(calls * share) > int((calls - 1) * share)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as real servers

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(503 if args.never_healthy else 200, "ok")
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [_model(args.name)]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if body.get("tiny_error"):
                self._scripted_error(body["tiny_error"])
                return
            if should_fail():
                self._send(500, {"error": {"message": f"{args.name}: scripted failure"}})
                return
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            text = f"{args.name}: {users[-1]['content'] if users else ''}"
            if body.get("stream"):
                self._stream(body, text)
                return
            self._send(200, _completion(args.name, text))

        def _stream(self, body: dict[str, Any], text: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            die_after = body.get("tiny_die_after")
            for index in range(int(body.get("tiny_chunks", 3))):
                if die_after is not None and index >= die_after:
                    self.wfile.flush()
                    print(f"{args.name}: dying mid-stream on purpose", flush=True)
                    os._exit(3)
                delta = {"role": "assistant", "content": f"{text} {index}"}
                chunk = {
                    "id": "chatcmpl-tiny",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": args.name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                time.sleep(float(body.get("tiny_chunk_seconds", 0)))
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")  # the last chunk: the answer is complete

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _scripted_error(self, kind: str) -> None:
            if kind == "openai":
                message = "prompt too long for /srv/models/secret/weights.gguf (n_ctx 512)"
                self._send(
                    400,
                    {
                        "error": {
                            "message": message,
                            "type": "invalid_request_error",
                            "param": "messages",
                            "code": "context_length",
                        }
                    },
                )
            elif kind == "html":
                self._send(502, "<html><body>Bad gateway at /opt/tiny/app.py</body></html>")
            else:
                trace = (
                    "Traceback (most recent call last):\n"
                    '  File "/srv/tiny/secret_module.py", line 12, in generate\n'
                    "RuntimeError: CUDA out of memory\n"
                )
                self._send(500, trace)

        def _send(self, status: int, payload: Any) -> None:
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            kind = "text/plain" if isinstance(payload, str) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the output for what the tests look for

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on {args.port}", flush=True)
    if args.die_after is not None:

        def die() -> None:
            time.sleep(args.die_after)
            print(f"{args.name}: crashing on purpose", flush=True)
            os._exit(3)

        threading.Thread(target=die, daemon=True).start()
    server.serve_forever()


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "tiny"}


def _completion(name: str, text: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    return {
        "id": "chatcmpl-tiny",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


if __name__ == "__main__":
    main()
