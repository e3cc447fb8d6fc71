"""Runs every test module of scaleout/tests (test_*.py) and prints ONE JSON object on its last line of stdout:

    {"tests": n, "failures": ["id: message", ...], "errors": [...], "skipped": k, "seconds": s}

(the node test of `npm test` spawns it and reads that line). unittest's own report goes to stderr. Exit status 0
when nothing failed or errored, else 1.

    cd scaleout && python3 tests/run_all.py [-v] [-k PATTERN]
"""
import argparse
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCALEOUT = os.path.dirname(HERE)


def _last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def main(argv=None):
    ap = argparse.ArgumentParser(description="run scaleout/tests and print one JSON summary line")
    ap.add_argument("-v", "--verbose", action="store_true", help="unittest's verbose report (on stderr)")
    ap.add_argument("-k", dest="patterns", action="append", help="only tests matching this substring (repeatable)")
    a = ap.parse_args(argv)
    for p in (SCALEOUT, HERE):  # digpt_torch, and the test modules as top-level modules (no package needed)
        if p not in sys.path:
            sys.path.insert(0, p)
    os.chdir(SCALEOUT)
    t0 = time.time()
    try:
        loader = unittest.TestLoader()
        if a.patterns:
            loader.testNamePatterns = [f"*{p}*" for p in a.patterns]
        suite = loader.discover(start_dir=HERE, pattern="test_*.py", top_level_dir=HERE)
        runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2 if a.verbose else 1)
        result = runner.run(suite)
        summary = {
            "tests": result.testsRun,
            "failures": [f"{t.id()}: {_last_line(tb)}" for t, tb in result.failures],
            "errors": [f"{t.id()}: {_last_line(tb)}" for t, tb in result.errors],
            "skipped": len(result.skipped),
            "seconds": round(time.time() - t0, 1),
        }
        ok = result.wasSuccessful()
    except BaseException as e:  # the summary line is always printed
        summary = {"tests": 0, "failures": [], "errors": [f"run_all: {type(e).__name__}: {e}"], "skipped": 0,
                   "seconds": round(time.time() - t0, 1)}
        ok = False
    sys.stderr.flush()
    print(json.dumps(summary), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
