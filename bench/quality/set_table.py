"""The phantom-set table of the even/odd issue from ``bench/quality/quality.py``'s fixed-budget results.

Run: ``.venv/bin/python bench/quality/set_table.py OUT1/curve_*.json OUT2/curve_*.json [--method n2n_bgin]
[--goal 0.86,0.65]``

Reads the ``curve*.json`` files that ``bench/quality/quality.py --phantoms`` writes (one per phantom kind and seed
list), and prints, as Markdown:

* one row per run: the references of the simulation (raw average, best gaussian low-pass, the ground truth
  without its wedge) and the method's scores as ``predict`` writes them (overall / in-wedge / measured region:
  the correlation with the ground truth of the whole average tomogram, real space; Fourier coefficients in the
  wedge; those outside it, both between 10 % and 50 % of Nyquist), bold where both goals are met;
* one row per phantom kind: the mean, the lowest run and the standard deviation over its runs (phantom seeds),
  and whether the mean and every run meet the goals.

Only reads; computes nothing but the summary, so it runs in a second.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def load_runs(paths: list[Path], method: str | None) -> list[dict]:
    """One dict per (phantom kind, seed, method) found in ``paths``.

    ``method``: the result key (e.g. ``n2n_bgin``: the method and the bench's ``--tag``); ``None``: every key
    that is not a reference.
    """
    references = ("raw", "gaussian", "truth without wedge")
    runs = []
    for path in paths:
        for name, rows in json.loads(path.read_text()).items():
            kind, _, seed = name.rpartition("_seed")
            for key, result in rows.items():
                if key in references or (method is not None and key != method):
                    continue
                final = result["predict"]
                runs.append({"kind": kind, "seed": int(seed), "method": key, "file": path.name,
                             "raw": rows["raw"], "gaussian": rows["gaussian"],
                             "truth": rows["truth without wedge"]["overall"],
                             "overall": final["overall"], "in_wedge": final["in_wedge"],
                             "measured": final["measured"],
                             "refine_seconds": result.get("refine_seconds")})
    return sorted(runs, key=lambda r: (r["kind"], r["method"], r["seed"]))


def _meets(overall: float, in_wedge: float, goal: tuple[float, float]) -> bool:
    return overall >= goal[0] and in_wedge >= goal[1]


def table(runs: list[dict], goal: tuple[float, float]) -> str:
    """The Markdown rows per run and the means per kind (and method)."""
    lines = ["| phantom (seed) | method | raw | gaussian (σ) | truth without its wedge "
             "| overall / in-wedge (measured) |", "|---|---|---|---|---|---|"]
    for r in runs:
        score = f"{r['overall']:.3f} / {r['in_wedge']:.3f} ({r['measured']:.3f})"
        if _meets(r["overall"], r["in_wedge"], goal):
            score = f"**{score}**"
        g = r["gaussian"]
        lines.append(f"| {r['kind']} ({r['seed']}) | {r['method']} | {r['raw']['overall']:.3f} / "
                     f"{r['raw']['in_wedge']:.3f} | {g['overall']:.3f} / {g['in_wedge']:.3f} (σ {g.get('sigma', '?')}) "
                     f"| {r['truth']:.3f} | {score} |")
    lines += ["", "| phantom kind | method | runs (seeds) | mean overall / in-wedge | lowest run | "
                  "std overall | mean meets | every run meets |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["kind"], r["method"]), []).append(r)
    for (kind, method), group in groups.items():
        overall = [r["overall"] for r in group]
        in_wedge = [r["in_wedge"] for r in group]
        mean = (statistics.fmean(overall), statistics.fmean(in_wedge))
        low = min(group, key=lambda r: r["overall"])
        spread = f"{statistics.stdev(overall):.3f}" if len(group) > 1 else "—"
        every = all(_meets(r["overall"], r["in_wedge"], goal) for r in group)
        seeds = ",".join(str(r["seed"]) for r in group)
        lines.append(f"| {kind} | {method} | {len(group)} ({seeds}) | {mean[0]:.3f} / {mean[1]:.3f} | "
                     f"{low['overall']:.3f} / {low['in_wedge']:.3f} (seed {low['seed']}) | {spread} | "
                     f"{'yes' if _meets(*mean, goal) else 'no'} | {'yes' if every else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="curve*.json files of bench/quality/quality.py --phantoms")
    parser.add_argument("--method", default=None, help="result key, e.g. n2n_bgin (method + tag); default: all")
    parser.add_argument("--goal", default="0.86,0.65", help="overall,in-wedge goals (the issue's: 0.86,0.65)")
    args = parser.parse_args()
    goal = tuple(float(v) for v in args.goal.split(","))
    print(table(load_runs(args.files, args.method), goal))


if __name__ == "__main__":
    main()
