"""Health monitor overhead: what one finished request costs to record, measured in one run.

    .venv/bin/python bench/health_record.py [--quick] [--out FOLDER]

Every lease that comes back is recorded (``HealthMonitor.record``) and judged at once,
p95 included, so this is on the proxy's hot path. The monitor keeps each window's
latencies sorted (an insertion per request); the table compares it with sorting the
window on every record, the way it first worked, at window sizes 100 … 10,000, with
p95 thresholds set so that every record computes the percentile. Writes
``bench/results/health_record.{json,md}`` (``--out``: in that folder instead); the
json's ``"ratios"`` (for ``bench/run_all.py``): the record's cost and its speed-up at
the largest window.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from machine import describe_machine
from modelpool.monitor.health import HealthMonitor, Thresholds
from run_all import ratio

RESULTS = Path(__file__).parent / "results"
THRESHOLDS = Thresholds(warning_p95=1.0, critical_p95=2.0)


class SortEachTime(HealthMonitor):
    """The baseline: sorts the whole window to judge each record (it still pays the
    sorted insertion too, a few µs at most, so the speed-up is slightly overstated)."""

    def _stats(self, series, now):  # type: ignore[no-untyped-def]
        series.ordered = sorted(seconds for _, seconds, _ in series.samples)
        return super()._stats(series, now)


def per_record_us(monitor_class: type[HealthMonitor], window: int, records: int) -> float:
    clock = [0.0]
    monitor = monitor_class(lambda: clock[0], window=1e9, thresholds=THRESHOLDS)
    monitor.max_samples = window
    rng = random.Random(1)
    for _ in range(window):  # a full window before timing
        monitor.record("m", "v1", rng.random(), True)
    started = time.perf_counter()
    for _ in range(records):
        clock[0] += 0.001
        monitor.record("m", "v1", rng.random(), rng.random() > 0.01)
    return (time.perf_counter() - started) / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer records per size")
    parser.add_argument("--out", type=Path, default=RESULTS, help="write the results here")
    args = parser.parse_args()
    records = 2_000 if args.quick else 20_000
    rows = []
    for window in (100, 1_000, 10_000):
        sorted_window = per_record_us(HealthMonitor, window, records)
        baseline = per_record_us(SortEachTime, window, max(200, records // (window // 100)))
        rows.append(
            {
                "window": window,
                "record_us": round(sorted_window, 2),
                "sort_each_time_us": round(baseline, 2),
                "speedup": round(baseline / sorted_window, 1),
            }
        )
    lines = [
        "# HealthMonitor.record",
        "",
        "Command: `.venv/bin/python bench/health_record.py`  ",
        f"Machine: {describe_machine()}; one run.",
        "",
        "| requests in window | record (µs) | sorting each time (µs) | speed-up |",
        "|---:|---:|---:|---:|",
        *(
            f"| {r['window']:,} | {r['record_us']} | {r['sort_each_time_us']} | {r['speedup']}× |"
            for r in rows
        ),
    ]
    print("\n".join(lines))
    largest = rows[-1]
    window = f"{largest['window']:,}-request window"
    ratios = [
        ratio(f"record, {window}", largest["record_us"], "µs", "lower"),
        ratio(f"record vs sorting each time, {window} (speed-up)", largest["speedup"]),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "health_record.md").write_text("\n".join(lines) + "\n")
    payload = {"rows": rows, "ratios": ratios}
    (args.out / "health_record.json").write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
