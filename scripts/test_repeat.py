"""Run the README's test command N times on a clean clone and report every test that failed in any run.

    python scripts/test_repeat.py --runs 5          (or: make test-repeat N=5)

The clone is of the committed HEAD (uncommitted changes are not tested); its venv is set up by the first
run and reused. The environment passes through: set CI=true to run as CI does (derandomized Hypothesis),
leave it unset for random exploration, which finds more. Exit status 1 when any run failed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|error).*) in [\d.]+s")
FAILED = re.compile(r"^(FAILED|ERROR) (\S+)")


def run_once(clone: Path, log: Path) -> tuple[int, list[str], list[str], float]:
    """(exit code, pytest summary lines, failed/errored test ids, seconds) of one `make test`."""
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(["make", "test", "PYTEST_ARGS=-rfE"], cwd=clone, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    summaries, failed = [], []
    for line in log.read_text(errors="replace").splitlines():
        if m := SUMMARY.match(line.strip("= ")) or SUMMARY.match(line):
            summaries.append(m.group(1))
        if m := FAILED.match(line):
            failed.append(m.group(2))
    return code, summaries, failed, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="how many times to run `make test` (default 5)")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                        help="repository to clone (default: this one)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to clone (default: a new temporary directory, kept for its logs)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mhpo-test-repeat-"))
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "-q", str(args.repo), str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True).stdout
    print(f"clean clone of {args.repo} at {head.strip()} in {clone}", flush=True)
    failures: Counter[str] = Counter()
    bad_runs = 0
    for i in range(1, args.runs + 1):
        log = workdir / f"run_{i}.log"
        code, summaries, failed, seconds = run_once(clone, log)
        failures.update(set(failed))
        bad_runs += code != 0
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"run {i}/{args.runs}: {status} in {seconds:.0f}s: {' | '.join(summaries) or 'no pytest summary'}"
              f"  [log: {log}]", flush=True)
    if failures:
        print("tests that failed in any run:")
        for test, count in failures.most_common():
            print(f"  {count}/{args.runs}  {test}")
    print(f"{args.runs - bad_runs}/{args.runs} runs passed")
    return 1 if bad_runs else 0


if __name__ == "__main__":
    sys.exit(main())
