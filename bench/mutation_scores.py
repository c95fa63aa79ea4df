"""Per-module mutation scores from ``mutmut results --all true`` (read on stdin).

Arguments: pairs of a module's name and the glob of its mutants' names, in the order
the table should list them. Prints a markdown table; a timeout counts as killed (the
test run hung because of the mutant), a mutant no selected test reaches as survived.
"""

from __future__ import annotations

import fnmatch
import sys
from collections import Counter


def main(argv: list[str]) -> None:
    modules, patterns = argv[0::2], argv[1::2]
    counts = {module: Counter[str]() for module in modules}
    for line in sys.stdin:
        name, _, status = line.strip().rpartition(": ")
        for module, pattern in zip(modules, patterns, strict=True):
            if fnmatch.fnmatchcase(name, pattern):
                counts[module][status] += 1
    print("| module | mutants | killed | survived | no test reaches it | score |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for module in modules:
        c = counts[module]
        total = sum(n for status, n in c.items() if status != "not checked")
        killed = c["killed"] + c["timeout"]
        lived = total - killed - c["no tests"]
        score = f"{killed / total:.1%}" if total else "-"
        print(f"| {module} | {total} | {killed} | {lived} | {c['no tests']} | {score} |")
        if c["not checked"]:
            print(f"{module}: {c['not checked']} mutants not run yet", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
