"""Writes the reference's results to tests/parity/fixtures/ (needs torch).

    python -m tests.parity.make_fixtures [EXPERIMENT ...]   # all of stored.EXPERIMENTS

Run it after changing the reference, the experiments or their inputs; `test_fixtures.py`
fails while the stored results and a live run disagree.
"""

from __future__ import annotations

import sys

from tests.parity import experiments, stored


def main(names: list[str]) -> None:
    unknown = sorted(set(names) - set(stored.EXPERIMENTS))
    if unknown:
        raise SystemExit(f"error: unknown experiments {unknown}: expected {stored.EXPERIMENTS}.")
    for name in names or stored.EXPERIMENTS:
        results = getattr(experiments, f"torch_{name}")()
        written = stored.save(name, results)
        print(f"{written}: {len(results)} arrays, {written.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
