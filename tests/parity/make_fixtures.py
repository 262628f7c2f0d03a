"""Writes the reference's results to tests/parity/fixtures/ (needs torch).

    python -m tests.parity.make_fixtures

Run it after changing the reference, the experiments or their inputs; `test_fixtures.py`
fails while the stored results and a live run disagree.
"""

from __future__ import annotations

from tests.parity import experiments, stored


def main() -> None:
    for name in stored.EXPERIMENTS:
        results = getattr(experiments, f"torch_{name}")()
        written = stored.save(name, results)
        print(f"{written}: {len(results)} arrays, {written.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
