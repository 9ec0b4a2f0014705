"""Run (or load) the French tiny comparison of the three strategies and print the results table.

    python benchmarks/compare_strategies.py --runs runs/compare-fr-tiny [--json out.json]

The table goes into docs/results.md ("Strategies" section) by hand, with the command and machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import os

from longadapt.recipes.compare import comparison_table, plot_curves, plot_positions, run_comparison


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/compare-fr-tiny")
    p.add_argument("--language", default="fr")
    p.add_argument("--small", action="store_true", help="seconds-long smoke runs")
    p.add_argument("--json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    runs = run_comparison(args.runs, args.language, small=args.small)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(comparison_table(runs))
    plot_curves(runs, os.path.join(args.runs, "curves.png"))
    plot_positions(runs, os.path.join(args.runs, "positions.png"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{**dataclasses.asdict(r), "path": str(r.path), "positions": {f"{a}-{b}": v for (a, b), v in r.positions.items()}}
                       for r in runs], fh, indent=2)


if __name__ == "__main__":
    main()
