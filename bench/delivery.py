"""Delivery latency and throughput: real `moodtrack worker` processes, a real receiver.

Usage: ``python -m bench.delivery [--database-url URL] [--events N] [--receiver-delay S]``

For 1 and then 3 workers (4 sender threads each), on a scratch database of its own (a new
database on the PostgreSQL server of ``--database-url``, else a SQLite file):
- latency: events committed one at a time at a steady pace while the workers run; from
  each commit to the receiver's verified arrival, p50 / p99 / max;
- throughput: a backlog of ``--events`` events, then the workers start; verified arrivals
  per second between the first and the last.
The receiver verifies every signature and answers after ``--receiver-delay`` seconds (a
real endpoint is not instant). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.delivery_harness import (
    add_webhook,
    emit_events,
    scratch_database,
    start_worker,
    stop,
)
from tests.webhook_receiver import Receiver


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _wait_for(receiver: Receiver, count: int, timeout: float) -> None:
    if not receiver.wait_for(count, timeout=timeout):
        raise SystemExit(f"only {len(receiver.received)} of {count} arrived in {timeout:.0f} s")


def latency(url: str, workers: int, delay: float, count: int, logs: Path) -> list[float]:
    """Seconds from commit to verified arrival for ``count`` events sent one by one."""
    receiver = Receiver(delay_seconds=delay).start()
    receiver.secrets = [add_webhook(url, receiver.url)]
    procs = [start_worker(url, logs / f"lat{workers}-{i}.log") for i in range(workers)]
    try:
        # A first event shows the workers are up and listening.
        emit_events(url, 1)
        _wait_for(receiver, 1, 60)
        committed: dict[str, float] = {}
        for _ in range(count):
            for event_id, at in emit_events(url, 1):
                committed[str(event_id)] = at
            time.sleep(0.02)
        _wait_for(receiver, count + 1, 120)
        return [r.arrived - committed[r.webhook_id] for r in receiver.received[1:]]
    finally:
        for proc in procs:
            stop(proc)
        receiver.stop()


def throughput(url: str, workers: int, delay: float, count: int, logs: Path) -> float:
    """Verified arrivals per second while ``workers`` work off a backlog of ``count``."""
    receiver = Receiver(delay_seconds=delay).start()
    receiver.secrets = [add_webhook(url, receiver.url)]
    emit_events(url, count, per_commit=100)
    procs = [start_worker(url, logs / f"tp{workers}-{i}.log") for i in range(workers)]
    try:
        _wait_for(receiver, count, 600)
        times = sorted(r.arrived for r in receiver.received)
        return (len(times) - 1) / (times[-1] - times[0])
    finally:
        for proc in procs:
            stop(proc)
        receiver.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a PostgreSQL URL (its server gets scratch DBs)")
    parser.add_argument("--events", type=int, default=2000, help="backlog for throughput")
    parser.add_argument("--latency-events", type=int, default=300)
    parser.add_argument("--receiver-delay", type=float, default=0.02)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    kind = "PostgreSQL" if (args.database_url or "").startswith("postgresql") else "SQLite"
    print(
        f"delivery on {kind}; receiver answers after {args.receiver_delay * 1000:.0f} ms; "
        f"4 sender threads per worker; logs in {logs}"
    )
    print(f"| workers | latency p50 / p99 / max (s) | events/s (backlog of {args.events}) |")
    print("|---|---|---|")
    for workers in (1, 3):
        with scratch_database(args.database_url) as url:
            lat = latency(url, workers, args.receiver_delay, args.latency_events, logs)
        with scratch_database(args.database_url) as url:
            rate = throughput(url, workers, args.receiver_delay, args.events, logs)
        print(
            f"| {workers} | {statistics.median(lat):.3f} / {_percentile(lat, 0.99):.3f} / "
            f"{max(lat):.3f} | {rate:,.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
