"""``python -m modelpool``: the same as the ``modelpool`` command."""

from modelpool.cli import main

if __name__ == "__main__":
    main()
