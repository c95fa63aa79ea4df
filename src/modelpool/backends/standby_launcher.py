"""A standby interpreter: imports a server's modules, waits, then runs it as ``-m`` would.

Run by the process backend (``standby``) as
``python standby_launcher.py MODULE IMPORT...``, with the environment and working
directory the server will have. It imports each IMPORT, says so on stdout
(``READY_MARK``), then reads one line from stdin:
a JSON list, the server's arguments after ``-m MODULE``. It runs MODULE as
``python -m MODULE ARGS...`` would (``runpy``, ``sys.argv`` and ``sys.path[0]`` as
``-m`` sets them), so the server starts with its imports already done. Its stdin is then
``/dev/null``, as a server started directly has it.

End of input before any line (the pool closed it, or the pool's process died and the
kernel closed the pipe) ends it quietly: a standby never outlives its pool.

Standard library only, and not imported from ``modelpool``: the interpreter that runs
it may be another environment's (llama-cpp-python installed elsewhere).
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys

READY_MARK = "modelpool standby: imports done\n"
"""Printed once the imports are done (``standby.READY_MARK``: the pool reads it)."""


def main() -> None:
    module, imports = sys.argv[1], sys.argv[2:]
    # `python -m` puts the working directory first on the path, not the script's folder.
    sys.path[0] = os.getcwd()
    for name in imports:
        importlib.import_module(name)
    sys.stdout.write(READY_MARK)
    sys.stdout.flush()
    line = sys.stdin.buffer.readline()
    if not line:
        return
    arguments = json.loads(line)
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise SystemExit(f"standby: expected a JSON list of strings, got {line[:200]!r}")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.argv = [sys.argv[0], *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
