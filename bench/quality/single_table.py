"""The single-tomogram table of issue #42 from ``bench/quality/quality.py``'s fixed-budget results.

Run: ``.venv/bin/python bench/quality/single_table.py OUT/curve_*.json [--defaults single_b2000]
[--isonet02 isonet-raw_b2000] [--isonet isonet_b2000] [--n2n n2n_b2000] [--goal 0.60]``

Reads the ``curve*.json`` files that ``bench/quality/quality.py --phantoms`` writes and prints, as Markdown, one
row per phantom and seed (overall / in-wedge correlation with the ground truth; the in-wedge one over the Fourier
coefficients the tilt range did not sample, 10–50 % of Nyquist):

* raw: the tomogram as reconstructed; gaussian: its best gaussian low-pass (σ 1–3);
* the single-tomogram defaults (``--defaults``: the result key, method + tag): what ``predict`` wrote with its
  defaults from the last checkpoint of ``refine`` on the simulation without its halves (the bench's ``single``:
  plane halves, the even/odd mode);
* IsoNet's mode with isonet-pl's filters (``--isonet``: the defaults before issue #42), where it was run;
* IsoNet 0.2's behaviour (``--isonet02``): the network's output as it is (no ``--denoise``) of the run on the
  unfiltered tomogram (IsoNet 0.2's deconv skips rows without a CTF); with a CTF, where IsoNet's deconvolution is
  the same and the bench skips ``isonet-raw``, the network output of the ``--isonet`` run;
* n2n on the halves (``--n2n``), where that was run;

and whether the defaults meet the issue's three goals there: overall above the gaussian's, in-wedge at least
``--goal``, and neither number below IsoNet 0.2's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _pair(scores: dict | None) -> str:
    return "—" if scores is None else f"{scores['overall']:.3f} / {scores['in_wedge']:.3f}"


def rows(paths: list[Path], defaults: str, isonet02: str, isonet: str, n2n: str) -> list[dict]:
    """One dict per phantom and seed that has a run of ``defaults``."""
    out = []
    for path in paths:
        for name, results in json.loads(path.read_text()).items():
            if defaults not in results:
                continue
            kind, _, seed = name.rpartition("_seed")
            old = results.get(isonet02, results.get(isonet))  # with a CTF: the same deconvolution, one run
            last = old["curve"][-1] if old is not None else None
            out.append({"kind": kind, "seed": int(seed), "raw": results["raw"], "gaussian": results["gaussian"],
                        "defaults": results[defaults]["predict"],
                        "isonet": results[isonet]["predict"] if isonet in results else None,
                        "isonet02": None if last is None else {"overall": last["overall"],
                                                               "in_wedge": last["in_wedge"]},
                        "n2n": results[n2n]["predict"] if n2n in results else None})
    return sorted(out, key=lambda r: (r["kind"], r["seed"]))


def table(runs: list[dict], goal: float) -> str:
    """Markdown: the scores per run and the goals each meets."""
    lines = ["| phantom (seed) | raw | best gaussian (σ) | single-tomogram defaults | IsoNet's mode, filtered | "
             "IsoNet 0.2 | n2n on the halves | > gaussian | in-wedge ≥ goal | ≥ IsoNet 0.2 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    met = [0, 0, 0]
    for r in runs:
        d, g, o = r["defaults"], r["gaussian"], r["isonet02"]
        checks = [d["overall"] > g["overall"], d["in_wedge"] >= goal,
                  None if o is None else d["overall"] >= o["overall"] and d["in_wedge"] >= o["in_wedge"]]
        met = [m + bool(c) for m, c in zip(met, checks, strict=True)]
        lines.append(f"| {r['kind']} ({r['seed']}) | {_pair(r['raw'])} | {_pair(g)} (σ {g.get('sigma', '?')}) | "
                     f"{_pair(d)} | {_pair(r['isonet'])} | {_pair(o)} | {_pair(r['n2n'])} | "
                     + " | ".join("not run" if c is None else "yes" if c else "**no**" for c in checks) + " |")
    lines.append(f"| runs meeting each goal | | | | | | | {met[0]} of {len(runs)} | {met[1]} of {len(runs)} | "
                 f"{met[2]} of {sum(r['isonet02'] is not None for r in runs)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="curve*.json files of bench/quality/quality.py --phantoms")
    parser.add_argument("--defaults", default="single_b2000", help="result key of the defaults' runs")
    parser.add_argument("--isonet02", default="isonet-raw_b2000", help="result key of IsoNet 0.2's runs")
    parser.add_argument("--isonet", default="isonet_b2000", help="result key of IsoNet's mode with the filters")
    parser.add_argument("--n2n", default="n2n_b2000", help="result key of the n2n runs")
    parser.add_argument("--goal", type=float, default=0.60, help="the in-wedge goal")
    args = parser.parse_args()
    print(table(rows(args.files, args.defaults, args.isonet02, args.isonet, args.n2n), args.goal))


if __name__ == "__main__":
    main()
