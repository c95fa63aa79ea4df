"""The process ``strategy: auto`` replays in (``auto_options.replay_in: process``).

    python -m modelpool.sim.replay_worker < pickle(arrivals, picture, candidates, current)

Reads its arguments pickled on stdin (from the server that started it: trusted), runs
``replay_table`` and writes the table pickled on stdout. A process of its own, so a
replay never holds the server's interpreter lock; killed when it runs past the timeout.
"""

from __future__ import annotations

import pickle
import sys

from modelpool.sim.replay import replay_table


def main() -> None:
    arrivals, picture, candidates, current = pickle.loads(sys.stdin.buffer.read())
    table = replay_table(arrivals, picture, candidates, current)
    sys.stdout.buffer.write(pickle.dumps(table))


if __name__ == "__main__":
    main()
