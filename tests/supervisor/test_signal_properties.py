"""Any sequence of signals at any moment leaves the `--workers` parent in charge.

Generated sequences of SIGHUP, SIGTTIN, SIGTTOU and SIGKILLs of random workers,
at random moments (a worker may be starting, serving, draining or waiting out a
crash back-off when a signal lands), then SIGTERM with more signals during the
drain. After each sequence the parent is alive and logged no traceback, the pool
converges to the size the signals asked for and serves, and SIGTERM ends it
within the drain time while the request in flight is answered.
"""

from __future__ import annotations

import os
import random
import signal
import time

import httpx
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from support import KetchProcess, RawConnection, free_port, wait_for, wait_workers, worker_pids

EXAMPLES = int(os.environ.get("KETCH_SIGNAL_EXAMPLES", "3"))  # more to hunt for a bug
MAX_WORKERS = 4  # keeps each example cheap
MAX_KILLS = 3  # crash back-off doubles per kill: three keep it under 2 s
GRACEFUL = 3  # --timeout-graceful-shutdown

step = st.tuples(
    st.sampled_from(["HUP", "TTIN", "TTOU", "KILL"]),
    st.floats(min_value=0.0, max_value=0.3),  # seconds before the next step
)
during_drain = st.lists(st.sampled_from(["HUP", "TTIN", "TTOU", "TERM"]), max_size=3)
SIGNALS = {
    "HUP": signal.SIGHUP,
    "TTIN": signal.SIGTTIN,
    "TTOU": signal.SIGTTOU,
    "TERM": signal.SIGTERM,
}


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate])
@given(
    steps=st.lists(step, min_size=4, max_size=12),
    after_term=during_drain,
    seed=st.integers(0, 2**16),
)
def test_any_signals_at_any_moment(
    steps: list[tuple[str, float]], after_term: list[str], seed: int
) -> None:
    port = free_port()
    args = ["support.apps:slow", "--port", str(port), "--workers", "2"]
    args += ["--timeout-graceful-shutdown", str(GRACEFUL)]
    with KetchProcess(args) as ketch:
        try:
            _play(ketch, port, steps, after_term, random.Random(seed))
        except (AssertionError, TimeoutError, OSError) as exc:
            raise AssertionError(f"{exc!r}; ketch's output:\n{ketch.output}") from None
    assert "Traceback" not in ketch.output, ketch.output
    assert "Error in the supervisor" not in ketch.output


def _play(
    ketch: KetchProcess,
    port: int,
    steps: list[tuple[str, float]],
    after_term: list[str],
    choose: random.Random,
) -> None:
    parent = ketch.proc.pid
    ketch.wait_for_output("Started parent process")
    target, kills = 2, 0
    for action, pause in steps:
        if action == "KILL" and kills < MAX_KILLS:
            pids = sorted(worker_pids(parent))
            if pids:
                kills += 1
                os.kill(choose.choice(pids), signal.SIGKILL)
        elif action == "TTIN" and target < MAX_WORKERS:
            target += 1
            _send_counted(ketch, signal.SIGTTIN)
        elif action == "TTOU":
            target = max(1, target - 1)
            _send_counted(ketch, signal.SIGTTOU)
        elif action == "HUP":
            ketch.signal(signal.SIGHUP)
        # the random moment of the next signal (test input, not synchronisation)
        time.sleep(pause)
        assert ketch.proc.poll() is None, "the parent died"

    wait_workers(parent, target, timeout=30)
    wait_for(lambda: _serves(f"http://127.0.0.1:{port}/?seconds=0"), timeout=30)
    assert ketch.proc.poll() is None, "the parent died"

    with RawConnection(port, timeout=20) as conn:
        conn.send(b"GET /?seconds=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        ketch.wait_for_output(r"slow request started \(1\.5s\)")
        ketch.signal(signal.SIGTERM)
        stopped = time.monotonic()
        for name in after_term:  # while the request in flight holds the drain open
            ketch.signal(SIGNALS[name])
        assert conn.read_response().body == b"slept 1.5"
    assert ketch.wait(GRACEFUL + 5 + 5) == 0
    assert time.monotonic() - stopped < GRACEFUL + 5


def _send_counted(ketch: KetchProcess, sig: signal.Signals) -> None:
    """Send a signal that changes the pool's size, and wait until the parent has
    taken it: the kernel merges a signal sent again before the first is
    handled, so two quick SIGTTINs may well mean one more worker."""
    acknowledgement = f"Received {sig.name}"
    seen = ketch.output.count(acknowledgement)
    ketch.signal(sig)
    wait_for(lambda: ketch.output.count(acknowledgement) > seen, timeout=5)


def _serves(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
