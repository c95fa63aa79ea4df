"""A tiny OpenAI-shaped server for the process backend's tests (stdlib only).

Answers ``/health``, ``GET /v1/models`` and ``POST /v1/chat/completions`` (echoing the
last user message after its ``--name``), and misbehaves on request: exits at start,
never becomes healthy, dies later, ignores SIGTERM, forks a grandchild, fails a share
of its answers with a 500.
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
            if should_fail():
                self._send(500, {"error": {"message": f"{args.name}: scripted failure"}})
                return
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            text = f"{args.name}: {users[-1]['content'] if users else ''}"
            self._send(200, _completion(args.name, text))

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
