"""A server process that holds GPU memory, for the device-binding tests on a real GPU.

Allocates ``--mb`` megabytes on every CUDA device it can see, then answers
``GET /health`` (200) and ``GET /info``: how many devices it sees, their UUIDs (as
torch gives them, no ``GPU-`` prefix), and the device variables it was started with.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

MB = 10**6
VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mb", type=int, default=512)
    args = parser.parse_args()
    count = torch.cuda.device_count()
    held = [torch.ones(args.mb * MB, dtype=torch.uint8, device=f"cuda:{i}") for i in range(count)]
    torch.cuda.synchronize()
    info: dict[str, Any] = {
        "device_count": count,
        "uuids": [str(torch.cuda.get_device_properties(i).uuid) for i in range(count)],
        "held_bytes": [block.numel() for block in held],
        "env": {name: os.environ.get(name) for name in VARIABLES},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(info if self.path == "/info" else "ok").encode()
            self.send_response(200 if self.path in ("/health", "/info") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    print(f"holding {args.mb} MB on {count} device(s)", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
