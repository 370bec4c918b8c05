"""Where the simulated phantom's power lies, and what that caps: the ceilings of the quality scores.

Run: ``.venv/bin/python bench/quality/phantom.py [--shape 96,256,256] [--seed 0] [--tilt -60,60] [--membrane_tilt 10]``

For the phantom of ``isonet-pl simulate`` (the one ``bench/quality/quality.py`` scores against) and the same
phantom without its flat membrane sheets (``simulate --membranes 0``), reports for each object class
the share of the total power (DC excluded), the share of its own power inside the missing wedge and
below 10 % of Nyquist, and the overall correlation with the ground truth of two ideal volumes:

* the ground truth with its wedge removed: a perfect denoiser that fills nothing;
* the ground truth minus the in-wedge part of the flat sheets: a perfect method in every respect,
  except that it cannot invent sheets it never sees (they are nearly parallel to the slab, so
  about 94 % of their power lies in the wedge).

No training; about 30 s on two cores.
"""

from __future__ import annotations

import argparse

import numpy as np

from isonet_pl.data.wedge import apply_wedge, measured_region
from isonet_pl.evaluate import correlation
from isonet_pl.simulate.phantom import make_phantom

OTHERS = {"n_membranes": 0, "n_vesicles": 0, "n_filaments": 0, "n_blobs": 0}
CLASSES = ("membranes", "vesicles", "filaments", "blobs")


def power_shares(volume: np.ndarray, wedge: np.ndarray, low: np.ndarray) -> tuple[float, float, float]:
    """(total power, share in the wedge, share below the low-frequency cut) of a (nz, ny, nx) volume, DC excluded."""
    power = np.abs(np.fft.fftn(volume - volume.mean())) ** 2
    total = float(power.sum())
    return total, float(power[wedge].sum() / total), float(power[low].sum() / total)


def report(shape: tuple[int, int, int], seed: int, tilt: tuple[float, float], membranes: int | None,
           membrane_tilt: float = 10.0) -> None:
    """Print the table for one phantom (``membranes`` None = the simulator's default count; ``membrane_tilt``:
    the sheets' largest tilt from the slab plane, degrees, ``simulate --membrane_tilt``)."""
    full = make_phantom(shape, seed, n_membranes=membranes, membrane_tilt=membrane_tilt)
    measured = np.broadcast_to(measured_region(shape, *tilt), shape)
    wedge = ~measured
    k = np.sqrt(sum(np.fft.fftfreq(n)[tuple(slice(None) if a == i else None for a in range(3))] ** 2
                    for i, n in enumerate(shape)))
    low = k < 0.05  # 10 % of Nyquist
    title = "default phantom" if membranes is None else f"phantom with {membranes} sheets"
    print(f"\n{title} {shape}, seed {seed}, tilt {tilt[0]:g}..{tilt[1]:g}, sheets tilted up to {membrane_tilt:g}°")
    total_all, w_all, l_all = power_shares(full, wedge, low)
    print(f"{'class':10s} {'share of power':>15s} {'in the wedge':>13s} {'below 10 % Nyq':>15s}")
    # Objects are drawn in the order sheets, vesicles, filaments, blobs from one generator, so a
    # phantom with only the first classes reproduces them exactly; each class is a difference.
    previous = np.zeros(shape, dtype=np.float32)
    counts = dict(OTHERS)
    parts = {}
    for name in CLASSES:
        key = f"n_{name}"
        counts[key] = None if not (name == "membranes" and membranes is not None) else membranes
        upto = make_phantom(shape, seed, membrane_tilt=membrane_tilt, **counts)
        parts[name] = upto - previous
        previous = upto
    assert np.allclose(previous, full, atol=1e-4), "class decomposition does not add up"
    for name, part in parts.items():
        if not part.any():
            print(f"{name:10s} {'none':>15s}")
            continue
        total, w, lo = power_shares(part, wedge, low)
        print(f"{name:10s} {total / total_all:15.2f} {w:13.2f} {lo:15.2f}")
    print(f"{'all':10s} {1.0:15.2f} {w_all:13.2f} {l_all:15.2f}")
    no_wedge = apply_wedge(full, measured)
    print(f"ceiling, perfect denoiser without any fill: overall {correlation(no_wedge, full):.3f}")
    if parts["membranes"].any():
        unseen = full - (parts["membranes"] - apply_wedge(parts["membranes"], measured))
        print(f"ceiling, perfect except the sheets' wedge: overall {correlation(unseen, full):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="96,256,256")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tilt", default="-60,60")
    parser.add_argument("--membrane_tilt", type=float, default=10.0, help="sheets' largest tilt (simulate's)")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    tilt = tuple(float(v) for v in args.tilt.split(","))
    report(shape, args.seed, tilt, None, args.membrane_tilt)
    report(shape, args.seed, tilt, 0)


if __name__ == "__main__":
    main()
