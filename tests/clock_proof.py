"""Run the `clock` tests at each awkward instant: `python -m tests.clock_proof [pytest args]`.

Each instant is one pytest session with TEST_NOW set (tests/conftest.py), so the `now` fixture,
the page clock and the test database's partitions all stand there. Two sessions run at a time
(CLOCK_PROOF_WORKERS), over the files that mark `clock` tests unless pytest args name others.
Exits non-zero, naming the instants that failed, if any did.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# All in the past: Postgres stamps some rows with its own now() (created_at, ingested_at),
# and data from after those stamps is a state no real clock produces.
INSTANTS = {
    "Saturday 20:30 London (wedding day, BST)": "2026-06-13T20:30:00+01:00",
    "Sunday 00:02 London (just after midnight)": "2026-06-14T00:02:00+01:00",
    "29 February 00:30 (leap day, a Thursday)": "2024-02-29T00:30:00+00:00",
    "1 May 00:30 London (peak season starts)": "2026-05-01T00:30:00+01:00",
    "1 November 00:30 London (a Sunday, off season)": "2026-11-01T00:30:00+00:00",
    "03:00 London on a Wednesday": "2026-06-10T03:00:00+01:00",
    "spring DST change (last Sunday of March, 01:00 UTC)": "2026-03-29T01:01:00+00:00",
    "autumn DST change (last Sunday of October, 01:00 UTC)": "2026-10-25T01:01:00+00:00",
}
# Sessions at once, one per core (4 took 606 s against 561 s for 2 on this machine).
WORKERS = int(os.environ.get("CLOCK_PROOF_WORKERS", "2"))
TESTS = Path(__file__).resolve().parent


def clock_files() -> list[str]:
    """The test files that can hold `clock` tests: collecting only them, not the whole suite,
    saves each session ~10 s. A file marks them with `pytest.mark.clock` (or `pytestmark`)."""
    return sorted(str(p) for p in TESTS.glob("test_*.py") if "mark.clock" in p.read_text())


def run_at(moment: str, extra: list[str]) -> tuple[int, float, str]:
    """One pytest session of the `clock` tests at `moment`: exit code, seconds, its output."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "clock", "-p", "no:cacheprovider", *extra],
        env={**os.environ, "TEST_NOW": moment},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, time.perf_counter() - started, done.stdout + done.stderr


def main(extra: list[str]) -> int:
    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        runs = {name: pool.submit(run_at, moment, extra) for name, moment in INSTANTS.items()}
        failed = []
        for name, future in runs.items():
            code, seconds, output = future.result()
            summary = output.strip().splitlines()[-1] if output.strip() else "no output"
            verdict = "ok  " if code == 0 else "FAIL"
            print(f"{verdict} {INSTANTS[name]} {name}: {summary} ({seconds:.0f} s)")
            if code != 0:
                failed.append(name)
                print(output)
    passed, total_s = len(INSTANTS) - len(failed), time.perf_counter() - started
    print(f"clock-proof: {passed}/{len(INSTANTS)} instants passed in {total_s:.0f} s")
    for name in failed:
        print(f"clock-proof FAILED at {INSTANTS[name]} ({name})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or clock_files()))
