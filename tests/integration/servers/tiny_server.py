"""A tiny OpenAI-shaped server for the process backend's tests (stdlib only).

Answers ``/health``, ``GET /v1/models`` and ``POST /v1/chat/completions`` (echoing the
last user message after its ``--name``; streamed in chunked SSE with ``stream: true``),
and misbehaves on request: starts slowly (``--start-delay``: a large model's server
reads its weights before it listens), exits at start (after that delay, if any), never
becomes healthy, dies later, ignores SIGTERM, forks a grandchild, fails a share of its
answers with a 500.

``GET /env`` reports how it was started: its argv and the device variables of its
environment (``CUDA_VISIBLE_DEVICES`` and the others the pool sets; null when unset),
so that tests check what a placement gave it. ``--note`` (repeatable) is accepted and
ignored: a test puts placeholders there to see them expanded in argv.

Sleep mode, as vLLM's (``--enable-sleep-mode``): ``POST /sleep`` (any query) puts it to
sleep, ``POST /wake_up`` wakes it; asleep, chat answers 503 and health stays 200.
``--fail-sleep`` and ``--fail-wake`` make every sleep or wake answer 500;
``--start-seconds`` delays its start, so that a cold start is clearly slower than a wake.

Playing a remote server (``backend: remote``): ``--api-key KEY`` answers 401 in OpenAI's
shape to any request without ``Authorization: Bearer KEY`` (its message echoes what was
sent, as hosted APIs do); ``--expect-model NAME`` answers a chat for another ``model``
with a 404 as a real server does; ``--print-auth`` prints, for each chat, whether an
``Authorization`` header came (never its value).

Request fields that script one answer (a real client sends them as extra body fields):
``tiny_chunks`` (stream this many chunks, default 3), ``tiny_chunk_seconds`` (pause
between them), ``tiny_die_after`` (the process exits after this many chunks, as a
crashing model server does mid-stream), ``tiny_error`` (``"traceback"``: a 500 with a
plain-text Python traceback and file paths; ``"openai"``: a 400 in OpenAI's error shape
whose message holds a file path; ``"html"``: a 502 page; ``"echo_key"``: a 400 in
OpenAI's shape whose message quotes the ``Authorization`` header), ``tiny_delay``
(seconds to wait before answering at all: a server that is slow to say anything).
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
    parser.add_argument("--start-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--exit-at-start", type=int, metavar="CODE")
    parser.add_argument("--never-healthy", action="store_true")
    parser.add_argument("--die-after", type=float, metavar="SECONDS")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--fork-grandchild", action="store_true")
    parser.add_argument("--fail-requests", type=float, default=0.0, metavar="FRACTION")
    parser.add_argument("--tag", help="ignored: lets a test run find its own servers")
    parser.add_argument("--note", action="append", help="ignored: reported in GET /env's argv")
    # Playing a remote server.
    parser.add_argument("--api-key", metavar="KEY")
    parser.add_argument("--expect-model", metavar="NAME")
    parser.add_argument("--print-auth", action="store_true")
    # Sleep mode (the process backend's warm tier).
    parser.add_argument("--fail-sleep", action="store_true")
    parser.add_argument("--fail-wake", action="store_true")
    parser.add_argument("--start-seconds", type=float, default=0.0)
    args = parser.parse_args()
    asleep = threading.Event()
    time.sleep(args.start_seconds)

    if args.start_delay:
        print(f"{args.name}: loading for {args.start_delay:g} s", flush=True)
        time.sleep(args.start_delay)  # a model's server reading its weights
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

        def _authorized(self) -> bool:
            """Without ``--api-key`` everyone is; else a 401 went out for a wrong key."""
            sent = self.headers.get("Authorization")
            if args.api_key is None or sent == f"Bearer {args.api_key}":
                return True
            message = f"Incorrect API key provided: {sent or 'none'}"
            error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
            self._send(401, {"error": {**error, "param": None}})
            return False

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path == "/health":
                self._send(503 if args.never_healthy else 200, "ok")
            elif self.path == "/env":
                self._send(200, {"argv": sys.argv, "env": _device_env()})
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [_model(args.name)]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self._sleep_mode():
                return
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self._authorized():
                return
            if args.print_auth:
                present = "present" if self.headers.get("Authorization") else "absent"
                print(f"{args.name}: authorization {present}", flush=True)
            if args.expect_model is not None and body.get("model") != args.expect_model:
                missing = f"The model {body.get('model')!r} does not exist"
                self._send(404, {"error": {"message": missing, "type": "invalid_request_error"}})
                return
            time.sleep(float(body.get("tiny_delay", 0)))
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

        def _sleep_mode(self) -> bool:
            """Answer the sleep mode's requests; True when this one was answered."""
            route = self.path.partition("?")[0]
            if route == "/sleep":
                if args.fail_sleep:
                    self._send(500, {"error": {"message": f"{args.name}: cannot sleep"}})
                    return True
                asleep.set()
                print(f"{args.name}: asleep", flush=True)
                self._send(200, "")
            elif route == "/wake_up":
                if args.fail_wake:
                    self._send(500, {"error": {"message": f"{args.name}: cannot wake: CUDA OOM"}})
                    return True
                asleep.clear()
                print(f"{args.name}: awake", flush=True)
                self._send(200, "")
            elif asleep.is_set():
                self._send(503, {"error": {"message": f"{args.name} is asleep"}})
            else:
                return False
            return True

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
            elif kind == "echo_key":
                sent = self.headers.get("Authorization", "none")
                self._send(400, {"error": {"message": f"bad request from {sent}"}})
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


DEVICE_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
)


def _device_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in DEVICE_VARIABLES}


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
