"""``python -m bench``: run the benchmarks, print the table, write the figures as JSON.

python -m bench                 # the issue's sizes (several minutes)
python -m bench --quick         # tiny sizes: a smoke test, the figures mean nothing
python -m bench --only B1 B4    # some of them
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from .scale import b7_scale
from .suite import BENCHMARKS, ROOT, Sizes, machine, print_table

BENCHMARKS = {**BENCHMARKS, "B7": b7_scale}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI: checks that it runs")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="ID", help="B1 … B7")
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "bench" / "results" / "latest.json",
        help="where to write the figures (default: bench/results/latest.json)",
    )
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    results = []
    with tempfile.TemporaryDirectory(prefix="icwschat-bench-") as scratch:
        for bench_id in args.only or sorted(BENCHMARKS):
            started = time.monotonic()
            print(f"{bench_id} …", file=sys.stderr, flush=True)
            result = BENCHMARKS[bench_id](sizes, Path(scratch))
            print(f"{bench_id}: {result.summary} [{time.monotonic() - started:.0f} s]", file=sys.stderr)
            results.append(result)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "results": [asdict(result) for result in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(results, sys.stdout)
    print(f"\nfigures written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
