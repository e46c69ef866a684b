"""``moodtrack serve``'s two children: gunicorn serving the API and a delivery worker.

A plain parent process, no threads (gunicorn forks its workers; a thread in a forking
parent can leave a lock held in every child): it starts both, starts the worker again
if it dies, stops when gunicorn stops, and on SIGTERM or SIGINT stops both. Each child is
asked by the kernel (Linux) to end if this process is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

RESTART_AFTER_SECONDS = 5.0
STOP_WITHIN_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; elsewhere nothing,
    and the worker notices its parent is gone by itself)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(command: Sequence[str]) -> subprocess.Popen[bytes]:
    preexec: Callable[[], None] | None = _die_with_parent if sys.platform == "linux" else None
    return subprocess.Popen(list(command), preexec_fn=preexec)


def supervise(*, server: Sequence[str], worker: Sequence[str] | None) -> int:
    """Run ``server`` (and ``worker``, restarted when it exits) until a signal or the
    server's exit; returns the server's exit code."""
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    http = _start(server)
    delivery = _start(worker) if worker else None
    try:
        while not stopping and http.poll() is None:
            if delivery is not None and worker and delivery.poll() is not None:
                print(f"delivery worker exited ({delivery.returncode}); restarting", flush=True)
                time.sleep(RESTART_AFTER_SECONDS)
                delivery = _start(worker)
            time.sleep(0.2)
    finally:
        for child in (delivery, http):
            if child is not None and child.poll() is None:
                child.terminate()
        for child in (delivery, http):
            if child is not None:
                try:
                    child.wait(timeout=STOP_WITHIN_SECONDS)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
    return http.returncode or 0
