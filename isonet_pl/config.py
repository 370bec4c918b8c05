"""Settings of every command, each defined once: type, default, range and help text.

One pydantic model per command (a *section*), composed into :class:`IsoNetConfig`.
Precedence, later wins: defaults here < a YAML file (``--config``, sections named after
the commands, see ``conf/default.yaml``) < command-line options. The click options and
the GUI forms are generated from these models, so nothing is written twice.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from isonet_pl.errors import InputError


class Section(BaseModel):
    """Base of the per-command settings: unknown keys are errors, assignments are validated, and
    ``inf``/``nan`` are refused for every number (they would run to a non-finite result)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _gpu_ids(value: Any) -> Any:
    """``gpuID`` as text: ``0``, ``[0, 1]`` (YAML) and ``"0,1"`` all become ``"0,1"``-style text; checked."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("must be GPU numbers such as 0 or 0,1,2,3")
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    text = str(value).replace(" ", "")
    if not re.fullmatch(r"\d+(,\d+)*", text):
        raise ValueError("must be GPU numbers such as 0 or 0,1,2,3")
    return text


def _scheduler_address(value: Any) -> Any:
    """A dask.distributed scheduler address, ``tcp://host:port`` (or ``host:port``); checked, not contacted."""
    if value is None:
        return None
    text = str(value).strip()
    if not re.fullmatch(r"((tcp|tls|ucx|ws|wss)://)?[\w.\-\[\]:]+:\d{1,5}|inproc://[\w./-]+", text):
        raise ValueError("must be a scheduler address such as tcp://host:8786")
    return text


def _split_ints(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(int(v) for v in value.replace(",", " ").split())
    if isinstance(value, int):
        return (value,) * 3
    return value


class TiltRange(Section):
    """Mixin: a tilt range in degrees (tilt axis Y), asymmetric allowed."""

    tilt_min: float = Field(-60.0, ge=-90, le=90, description="Lowest tilt angle of the tilt series (degrees).")
    tilt_max: float = Field(60.0, ge=-90, le=90, description="Highest tilt angle of the tilt series (degrees).")

    @model_validator(mode="after")
    def _ordered(self):
        if self.tilt_min >= self.tilt_max:
            raise ValueError(f"tilt_min ({self.tilt_min}) must be below tilt_max ({self.tilt_max})")
        return self


class IOConfig(Section):
    """How tomograms are stored as Zarr (shared by all commands)."""

    zarr_folder: str = Field("zarr", description="Folder of the Zarr copies of the tomograms, relative to the "
                                                 "STAR file's folder (converted once, reused while the MRC is "
                                                 "unchanged).")
    zarr_chunks: tuple[int, int, int] = Field((64, 64, 64), description="Zarr chunk shape z,y,x (voxels).")
    zarr_levels: int = Field(3, ge=1, le=8, description="Resolution levels in each Zarr store (1 = full "
                                                        "resolution only; more help viewers).")
    compression_level: int = Field(1, ge=0, le=22, description="Zstandard compression level of Zarr chunks.")

    _split = field_validator("zarr_chunks", mode="before")(_split_ints)

    @field_validator("zarr_chunks")
    @classmethod
    def _positive(cls, v):
        if len(v) != 3 or min(v) < 8:
            raise ValueError("needs three sizes z,y,x of at least 8 voxels")
        return v


class PrepareStarConfig(TiltRange):
    """prepare_star: build a tomogram STAR file from a folder of tomograms."""

    output_star: str = Field("tomograms.star", description="STAR file to write.")
    pixel_size: float | None = Field(None, gt=0, description="Pixel size of the tomograms (Å); unset: from the MRC "
                                                             "headers (which must give one).")
    defocus: float = Field(0.0, ge=0, description="Defocus at 0° tilt (Å, underfocus positive); 0 = no CTF "
                                                  "deconvolution (e.g. phase plate).")
    number_subtomos: int = Field(100, ge=1, le=100_000, description="Subtomograms to extract per tomogram.")
    even: str | None = Field(None, description="Folder of even half tomograms, paired with --odd by name (identical, "
                                               "or <name>_EVN*/<name>_ODD*, <name>_even*/<name>_odd*, "
                                               "<name>_half1*/<name>_half2*; --even and --odd may be one folder); "
                                               "FOLDER_NAME then receives their averages where missing.")
    odd: str | None = Field(None, description="Folder of odd half tomograms (see --even).")
    overwrite: bool = Field(False, description="Replace an existing --output_star (the results recorded in its "
                                               "rows are then lost from it).")

    @model_validator(mode="after")
    def _both_halves(self):
        if (self.even is None) != (self.odd is None):
            raise ValueError("give both --even and --odd, or neither")
        return self


class PrepareSubtomoStarConfig(TiltRange):
    """prepare_subtomo_star: build a subtomogram STAR file from a folder of subtomograms."""

    output_star: str = Field("subtomo.star", description="STAR file to write.")
    pixel_size: float = Field(10.0, gt=0, description="Pixel size of the subtomograms (Å).")
    cube_size: int | None = Field(None, ge=8, description="Training cube edge; default (or when not below the "
                                                          "subtomogram edge): int(crop/1.5 + 1)//16*16, as IsoNet.")


class SimulateConfig(TiltRange):
    """simulate: synthetic tomograms with their ground truth, for tests and the demo."""

    shape: tuple[int, int, int] = Field((96, 256, 256), description="Tomogram shape z,y,x (voxels).")
    n_tomograms: int = Field(1, ge=1, le=100, description="Number of tomograms (seeds seed, seed+1, ...).")
    pixel_size: float = Field(10.0, gt=0, description="Pixel size (Å).")
    tilt_step: float = Field(3.0, gt=0, le=30, description="Tilt increment (degrees).")
    snr: float = Field(0.3, gt=0, description="Signal-to-noise ratio of each projection (variance of the "
                                              "noise-free projection / variance of the added noise).")
    defocus: float = Field(0.0, ge=0, description="Defocus (Å, underfocus positive) of a CTF applied to the "
                                                  "projections; 0 = no CTF.")
    voltage: float = Field(300.0, gt=0, description="Acceleration voltage (kV), for the CTF.")
    cs: float = Field(2.7, ge=0, description="Spherical aberration (mm), for the CTF.")
    halves: bool = Field(False, description="Also write even/odd half tomograms with independent noise.")
    slab_fraction: float = Field(0.6, gt=0, le=1, description="Ice thickness as a fraction of the tomogram's z "
                                                              "size; outside the slab the density is 0.")
    membranes: int | None = Field(None, ge=0, description="Membrane sheets, nearly parallel to the slab at the "
                                                         "default membrane_tilt (their power then lies almost "
                                                         "all in the missing wedge); unset: 2 per 256x256 "
                                                         "voxels of 10 A.")
    membrane_tilt: float = Field(10.0, ge=0, le=60, description="Largest tilt of the membrane sheets from the "
                                                                "slab plane (degrees; each drawn uniformly up to "
                                                                "it). 10: nearly flat, almost all in the wedge; "
                                                                "larger: some sheets cross the slab, partly "
                                                                "measured, so a network can learn them.")
    number_subtomos: int = Field(100, ge=1, le=100_000, description="Subtomograms per tomogram written to the STAR "
                                                                     "file.")
    seed: int = Field(0, ge=0, description="Random seed.")

    _split = field_validator("shape", mode="before")(_split_ints)

    @field_validator("shape")
    @classmethod
    def _shape(cls, v):
        if len(v) != 3 or min(v) < 16:
            raise ValueError("needs three sizes z,y,x of at least 16 voxels")
        return v


class Compute(Section):
    """Mixin: where dask computations run."""

    ncpu: int | None = Field(None, ge=1, description="Worker threads; unset: all usable CPU cores.")
    dask_scheduler: str | None = Field(None, description="Address of a dask.distributed scheduler to run on "
                                                         "(e.g. tcp://host:8786); unset: local threads.")

    _scheduler = field_validator("dask_scheduler", mode="before")(_scheduler_address)


class DeconvConfig(Compute):
    """deconv: CTF deconvolution of the tomograms (IsoNet's Wiener-like filter)."""

    deconv_folder: str = Field("./deconv", description="Output folder of the deconvolved tomograms.")
    plane_halves: bool = Field(True, description="Rows without even/odd halves: give them two, made of the "
                                                 "tomogram's even and odd Y planes (across the tilt axis, whose "
                                                 "noise a weighted back-projection leaves independent; written to "
                                                 "<deconv_folder>/planes/ and named in the half columns), so that "
                                                 "refine trains the even/odd mode on them; checked on the noise, "
                                                 "and skipped with a warning where neighbouring planes share it "
                                                 "(docs/single-tomograms.md). false: IsoNet's single-tomogram mode.")
    noise_filter: bool = Field(True, description="Rows without a CTF (defocus 0) and without even/odd halves (plane "
                                                 "halves included): write a Wiener-filtered tomogram instead, with "
                                                 "weights from its own noise, measured on its empty slices, else by "
                                                 "the tilt-axis model of its specimen slices (logged; "
                                                 "docs/method-isonet.md). false: skip those rows, as IsoNet 0.2 "
                                                 "does.")
    voltage: float = Field(300.0, gt=0, description="Acceleration voltage (kV).")
    cs: float = Field(2.7, ge=0, description="Spherical aberration (mm).")
    snrfalloff: float | None = Field(None, gt=0, description="SNR fall-off; sets _rlnSnrFalloff of the selected rows "
                                                            "(else the STAR value, 1.0 if absent).")
    deconvstrength: float | None = Field(None, gt=0, description="Deconvolution strength; sets _rlnDeconvStrength "
                                                                "of the selected rows (else the STAR value, 1.0).")
    highpassnyquist: float = Field(0.02, gt=0, lt=1, description="Width of the low-frequency high-pass (fraction "
                                                                 "of Nyquist).")
    amplitude_contrast: float = Field(0.07, ge=0, lt=1, description="Amplitude contrast fraction.")
    phaseshift: float = Field(0.0, ge=-180, le=180, description="Phase shift of a phase plate (degrees).")
    chunk_size: int | None = Field(None, ge=16, description="Edge of the blocks of chunked mode (voxels); unset: "
                                                            "the whole volume in one FFT when it fits "
                                                            "memory_budget, else blocks of 256.")
    overlap_rate: float = Field(0.125, ge=0, lt=1, description="Overlap of neighbouring blocks in chunked mode, as "
                                                               "a fraction of chunk_size (IsoNet: 0.25; 0.125 "
                                                               "suffices here as the smooth background is "
                                                               "deconvolved globally).")
    memory_budget: float | None = Field(None, gt=0, description="Memory (GiB) the whole-volume mode may use; unset: "
                                                                "half of the available RAM.")


class MaskConfig(Compute):
    """make_mask: masks of the sample-containing regions (where subtomograms are drawn)."""

    mask_folder: str = Field("mask", description="Output folder of the masks.")
    patch_size: int = Field(4, ge=1, le=32, description="Filter size (binned voxels): gaussian sigma = patch/2, "
                                                        "max and std windows 2*patch+1.")
    mask_boundary: str | None = Field(None, description="IMOD .mod polygon (or text file of x y z points) that "
                                                        "bounds the mask; sets _rlnMaskBoundary of the selected "
                                                        "rows.")
    density_percentage: float | None = Field(None, gt=0, le=100, description="Percentage of voxels kept by the "
                                                                             "density criterion; sets "
                                                                             "_rlnMaskDensityPercentage (else the "
                                                                             "STAR value, 50).")
    std_percentage: float | None = Field(None, gt=0, le=100, description="Percentage of voxels kept by the local "
                                                                         "std criterion; sets "
                                                                         "_rlnMaskStdPercentage (else 50).")
    use_deconv_tomo: bool = Field(True, description="Use the deconvolved tomogram when there is one.")
    z_crop: float | None = Field(None, ge=0, lt=0.5, description="Fraction of Z to exclude at the top and at the "
                                                                 "bottom.")


#: Training cubes are a multiple of this (2^unet_depth for refine's default depth 3).
CUBE_MULTIPLE = 8
#: An unset crop_size is cube_size plus this (room for the rotations and shifts of the training pairs).
CROP_MARGIN = 16


class ExtractConfig(Compute):
    """extract: subtomograms for training, drawn inside the masks (and a share anywhere: the background)."""

    subtomo_folder: str = Field("subtomo", description="Output folder of the subtomograms (an earlier "
                                                       "extract's is replaced; a folder holding anything else is "
                                                       "refused).")
    subtomo_star: str = Field("subtomo.star", description="Output subtomogram STAR file.")
    cube_size: int = Field(64, ge=8, description="Edge of the training cubes (voxels); a multiple of "
                                                 "2^unet_depth.")
    crop_size: int | None = Field(None, ge=8, description="Edge of the extracted subtomograms; unset: "
                                                          "cube_size + 16.")
    use_deconv_tomo: bool = Field(True, description="Extract from the deconvolved tomogram when it exists.")
    seed: int = Field(0, ge=0, description="Random seed of the centres.")
    background_share: float = Field(0.1, ge=0, lt=1, description="Share of the centres drawn anywhere in the "
                                    "tomogram where the crop fits, inside or outside the mask, so that training also "
                                    "sees the background above and below the specimen that predict corrects; 0: all "
                                    "inside the mask. Every centre is at least crop/2 from the faces (IsoNet 0.2).")

    @model_validator(mode="after")
    def _crop_not_below_cube(self):
        if self.cube_size % CUBE_MULTIPLE:
            lower = self.cube_size // CUBE_MULTIPLE * CUBE_MULTIPLE
            raise ValueError(f"cube_size {self.cube_size} is not a multiple of {CUBE_MULTIPLE} (2^unet_depth with "
                             f"refine's default depth 3): use {max(lower, CUBE_MULTIPLE)} or {lower + CUBE_MULTIPLE}")
        if self.crop_size is not None and self.crop_size < self.cube_size:
            raise ValueError(f"crop_size ({self.crop_size}) must not be below cube_size ({self.cube_size})")
        return self


def _split_floats(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(float(v) for v in value.replace(",", " ").split())
    if isinstance(value, (int, float)):
        return (value,)
    return value


class Method(str, Enum):
    """refine's training method. A ``str`` enum: it equals its value, so settings files, saved runs and model
    cards keep the plain words."""

    ISONET = "isonet"  # IsoNet 0.2's single-tomogram training
    N2N = "n2n"  # Noise2Noise on even/odd halves

    def __str__(self) -> str:  # logs and messages show the word, as the settings do
        return self.value

    __format__ = str.__format__


#: The largest noise std refine adds (normalised units): far above any useful level, far below an overflow.
MAX_NOISE_LEVEL = 5.0


class RefineConfig(Section):
    """refine: iterative training of the U-Net on missing-wedge pairs made on the fly."""

    result_dir: str = Field("results", description="Output folder: checkpoints, settings and losses per iteration.")
    iterations: int = Field(30, ge=1, description="Refinement iterations.")
    epochs: int = Field(10, ge=1, description="Epochs per iteration.")
    batch_size: int | None = Field(None, ge=1, description="Global batch size; unset: max(4, 2 x GPUs).")
    steps_per_epoch: int | None = Field(None, ge=1, description="Steps per epoch; unset: min(6 x subtomograms / "
                                                                "batch_size, 200).")
    learning_rate: float | None = Field(None, gt=0, description="Adam learning rate; unset: 4e-4 for isonet "
                                                                "(IsoNet 0.2's), 1e-3 for n2n (better at a small "
                                                                "training budget; docs/method-n2n.md).")
    lr_schedule: Literal["auto", "constant", "cosine"] = Field("auto", description="How the learning rate "
                                                               "changes: constant (IsoNet 0.2), or cosine: along a "
                                                               "half cosine over the whole run to 5 % of it. Auto: "
                                                               "constant.")
    noise_level: tuple[float, ...] = Field((0.05, 0.10, 0.15, 0.20), description="Noise std added to the inputs "
                                                                                   "(normalised units), per stage.")
    noise_start_iter: tuple[int, ...] = Field((11, 16, 21, 26), description="First iteration of each noise stage.")
    noise_mode: Literal["noFilter", "ramp", "hamming"] = Field("noFilter", description="Back-projection filter "
                                                                                      "that shapes the noise.")
    unet_depth: int = Field(3, ge=1, le=6, description="Down-sampling levels of the U-Net.")
    filter_base: int = Field(64, ge=1, description="Channels at the first level.")
    convs_per_depth: int = Field(3, ge=1, description="Convolution blocks per level.")
    kernel: int = Field(3, ge=1, description="Convolution kernel edge (odd).")
    drop_out: float | None = Field(None, ge=0, lt=1, description="Dropout rate in the U-Net's blocks; unset: 0.3 "
                                                                 "for isonet (IsoNet 0.2's), 0 for n2n (better at a "
                                                                 "small training budget; docs/method-n2n.md).")
    batch_normalization: bool = Field(True, description="Batch normalisation in the convolution blocks.")
    pool: bool = Field(False, description="Max-pooling / up-sampling instead of strided convolutions.")
    residual: bool | None = Field(None, description="Add the input to the network's output (IsoNet's U-Net). Off: "
                                                    "less high-frequency noise left. Unset: on "
                                                    "for --method isonet, off for n2n.")
    normalize_percentile: bool = Field(True, description="Normalise by the 4th/96th percentiles (else z-score).")
    method: Literal["auto", "isonet", "n2n"] = Field("auto", description="isonet: IsoNet's single-tomogram "
                                                                         "training; n2n: even/odd halves "
                                                                         "(Noise2Noise); auto: n2n when the "
                                                                         "subtomograms have halves.")
    mw_weight: float = Field(1.0, ge=0, description="n2n: weight of the loss in the input's missing wedge "
                                                    "(per Fourier coefficient, relative to the region measured "
                                                    "in both halves).")
    frequency_power: float = Field(0.0, ge=0, le=2, description="n2n: weight each Fourier coefficient of the loss "
                                                             "by |k|^-p for this p (|k| at least one Fourier cell of "
                                                             "the cube), which evens out the noise of a weighted "
                                                             "back-projection, whose power grows with |k|; 0: flat "
                                                             "(p = 1 scored level with 0; docs/method-n2n.md).")
    wedge_target: Literal["half", "average"] = Field(
        "half", description="n2n: target of the loss in the input's missing wedge: half = the other half (as in the "
                            "rest of the spectrum); average = the average of both halves (half the noise; the "
                            "input holds none of those coefficients).")
    rotations: Literal["cube", "continuous"] = Field("cube", description="Rotations of the training pairs: cube = "
                                                     "IsoNet's 20 rotations by 90° (exact); continuous = any "
                                                     "rotation, drawn uniformly (cubic-spline interpolation, as "
                                                     "DeepDeWedge; the rotated corners stay inside subtomograms "
                                                     "extracted with crop_size >= 1.74 x cube_size).")
    max_shift: int = Field(0, ge=0, description="n2n: cut each training cube at a random offset of up to N voxels "
                                                "from its rotated subtomogram's centre along each axis (input and "
                                                "target alike), so training sees more of each extracted crop than "
                                                "its centre; at most (crop - cube) / 2. 0: the centre (IsoNet's); "
                                                "isonet always 0.")
    input_noise: float | None = Field(None, gt=0.5, le=1, description="n2n: draw each training input's noise "
                                                                   "variance, relative to one half's, uniformly "
                                                                   "between this and 1 (recorrupted even/odd pairs, "
                                                                   "whose target grows noisier as the input grows "
                                                                   "cleaner), so training also sees inputs nearer "
                                                                   "the noise of the average (0.5) that predict runs "
                                                                   "on; 1: the halves themselves. Unset: 0.6 "
                                                                   "(docs/method-n2n.md).")
    ema_decay: float | None = Field(None, ge=0, lt=1, description="Exponential moving average of the weights, "
                                                                 "updated every step: the averaged weights are "
                                                                 "validated, refill the wedges, start the next "
                                                                 "iteration and are saved; 0 = off. Unset: 0.99 for "
                                                                 "n2n (steadier and better; docs/method-n2n.md), off "
                                                                 "for isonet (as IsoNet).")
    recalibrate_bn: bool | None = Field(None, description="After each iteration, set the batch-norm running "
                                                         "statistics to their mean over 128 training inputs for "
                                                         "the weights that refill the wedges and are saved (with "
                                                         "Keras's momentum they lag by ~1000 steps). Unset: on "
                                                         "for n2n, off for isonet (as IsoNet).")
    refill_every: int = Field(1, ge=1, description="n2n: refill the halves' wedges with the prediction every N "
                                                   "iterations.")
    fill_normalization: Literal["auto", "subtomogram", "tomogram"] = Field(
        "auto", description="How the wedge-filled subtomograms are normalised each iteration: subtomogram = each on "
                            "its own percentiles (IsoNet 0.2); tomogram = keep the whole tomogram's statistics "
                            "(level differences between subtomograms stay; needs our extract); auto = subtomogram "
                            "for --method isonet, tomogram for n2n (better; docs/method-n2n.md).")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        "32", description="Training precision (bf16-mixed: ~2x faster on recent CPUs and GPUs); auto: bf16-mixed "
                          "where this device runs the network faster in it (timed once per network and machine, as "
                          "predict does; GPUs: bf16-mixed, or 16-mixed without bf16), else 32; the choice is logged "
                          "and saved with the run.")
    select_subtomo_number: int | None = Field(None, ge=1, description="Random subset of subtomograms per "
                                                                      "iteration; unset: all.")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Fraction of subtomograms held out for validation.")
    preprocessing_ncpus: int | None = Field(None, ge=0, description="DataLoader worker processes making pairs; "
                                                                    "unset: up to 8, one core left for training.")
    gpuID: str | None = Field(None, description="GPUs to train on, e.g. 0,1,2,3 (DDP when several); unset: all "
                                                "visible GPUs, else the CPU.")
    accelerator: Literal["auto", "cpu", "gpu"] = Field("auto", description="Lightning accelerator.")
    devices: int | None = Field(None, ge=1, description="Number of devices (processes) when gpuID is unset, e.g. "
                                                        "2 CPU processes for a DDP test.")
    num_nodes: int = Field(1, ge=1, description="Nodes for multi-node DDP (SLURM or torchrun set the rest).")
    pretrained_model: str | None = Field(None, description="A checkpoint (.ckpt) of ours to start from.")
    continue_from: str | None = Field(None, description="A refine_iterNN.json or result folder to resume "
                                                        "exactly (its saved settings and state; given with it, "
                                                        "iterations extends or shortens the run and the devices "
                                                        "and worker settings apply).")
    remove_intermediate: bool = Field(False, description="Keep only the latest subtomogram estimates.")
    log_level: Literal["info", "debug"] = Field("info", description="Log detail.")
    seed: int = Field(0, ge=0, description="Random seed (pairs, split, initialisation).")

    _floats = field_validator("noise_level", mode="before")(_split_floats)
    _gpus = field_validator("gpuID", mode="before")(_gpu_ids)

    @field_validator("noise_start_iter", mode="before")
    @classmethod
    def _ints(cls, v):
        v = _split_floats(v)
        return tuple(int(x) for x in v) if isinstance(v, tuple) else v

    @model_validator(mode="after")
    def _consistent(self):
        if len(self.noise_level) != len(self.noise_start_iter):
            raise ValueError(f"noise_level ({len(self.noise_level)} values) and noise_start_iter "
                             f"({len(self.noise_start_iter)} values) must have the same length")
        if self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")
        bad = [v for v in self.noise_level if not 0 <= v <= MAX_NOISE_LEVEL]
        if bad:
            raise ValueError(f"noise_level {bad[0]:g} is outside 0..{MAX_NOISE_LEVEL:g} (the std of the added noise "
                             "in units of the normalised subtomograms; IsoNet uses 0.05 to 0.2)")
        return self


class PredictConfig(Section):
    """predict: correct whole tomograms with a trained model."""

    output_dir: str = Field("./corrected_tomos", description="Output folder of the corrected tomograms.")
    cube_size: int | None = Field(None, ge=8, description="Edge of the core of each tile (voxels; the network is "
                                                          "fully convolutional, any size works); unset: as large as "
                                                          "the device's memory allows for one tile (64-512).")
    crop_size: int | None = Field(None, ge=8, description="Edge of the tiles fed to the network (core + context on "
                                                          "both sides); unset: the core + 2 x a quarter of the "
                                                          "network's receptive radius.")
    batch_size: int | None = Field(None, ge=1, description="Tiles per network call (kept for IsoNet "
                                                           "compatibility; tiles run one by one per worker).")
    normalize_percentile: bool | None = Field(None, description="Normalisation mode; unset: the checkpoint's "
                                                                "(a different value is ignored with a warning).")
    use_deconv_tomo: bool = Field(True, description="Correct the deconvolved tomogram when there is one.")
    halves: Literal["both", "average"] = Field(
        "average", description="Tomograms with even/odd halves: average = run the model on the average tomogram "
                               "(better; docs/method-n2n.md); both = run it on each half and average the "
                               "two outputs.")
    disagreement_map: bool = Field(False, description="With halves: also write <name>_disagreement.mrc, the "
                                                      "per-voxel |difference| of the two half predictions "
                                                      "(where the network's fill is not supported by both).")
    batch_norm_statistics: Literal["model", "halves", "input"] = Field(
        "model", description="Running statistics of the network's batch norms (models trained with them): model = "
                             "the checkpoint's, measured by refine on training cubes; halves = measured again on "
                             "the tomogram's even/odd halves through predict's own tiles; input = measured on what "
                             "the network runs on (neither scored higher on every run; docs/method-n2n.md).")
    denoise: bool = Field(True, description="Filter the corrected tomogram with a Wiener filter whose weights are "
                                            "measured on its own noise (its empty slices above and below the "
                                            "specimen, else the tilt-axis model of its specimen slices), per "
                                            "frequency band, in the measured region and in the filled wedge; "
                                            "logged. Skipped, with one warning per command, where neither gives a "
                                            "reliable estimate. false: the network's output as is (IsoNet 0.2).")
    flips: int = Field(1, ge=1, le=4, description="Test-time augmentation: the mean of the network's outputs over "
                                                  "this many flips of each tile that map the tilt geometry onto "
                                                  "itself, for any tilt range (1: none; 2: also flipped along Y, the "
                                                  "tilt axis; 4: also along Z with X, and along all three); as many "
                                                  "times the network's work (4 gains a little, docs/method-n2n.md).")
    gpuID: str | None = Field(None, description="GPU to predict on, e.g. 0; unset: the first visible GPU, else "
                                                "the CPU.")
    precision: Literal["auto", "model", "32", "bf16-mixed", "16-mixed"] | None = Field(
        "auto", description="Inference precision; auto: the faster of float32 and bf16 on this device, measured on "
                            "a first block, logged and kept in the machine's cache for this network (bf16 on GPUs "
                            "that have it, else 16-mixed; on a CPU with bf16 instructions bf16 is about 2x faster "
                            "and scores the same); model (or null): the one the model was "
                            "trained with (refine --precision).")
    log_level: Literal["info", "debug"] = Field("info", description="Log detail.")

    _gpus = field_validator("gpuID", mode="before")(_gpu_ids)

    @field_validator("flips")
    @classmethod
    def _flips_of_the_geometry(cls, value: int) -> int:
        if value not in (1, 2, 4):
            raise ValueError(f"flips must be 1, 2 or 4, got {value}")
        return value

    @model_validator(mode="after")
    def _crop_not_below_cube(self):
        if self.crop_size is not None and self.cube_size is not None and self.crop_size < self.cube_size:
            raise ValueError(f"crop_size ({self.crop_size}) must not be below cube_size ({self.cube_size})")
        return self


#: How the options of the long sections are grouped in ``--help`` and in the GUI's forms (others: "Options").
#: Groups are shown in this order; a setting not named here goes to the last group.
OPTION_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "RefineConfig": {
        "Run": ("result_dir", "iterations", "epochs", "batch_size", "steps_per_epoch", "method", "precision",
                "seed"),
        "Network": ("unet_depth", "filter_base", "convs_per_depth", "kernel", "drop_out", "batch_normalization",
                    "pool", "residual"),
        "Training": ("learning_rate", "lr_schedule", "rotations", "ema_decay", "normalize_percentile",
                     "fill_normalization", "val_fraction", "select_subtomo_number"),
        "Single tomogram (isonet)": ("noise_level", "noise_start_iter", "noise_mode"),
        "Even/odd halves (n2n)": ("mw_weight", "frequency_power", "wedge_target", "input_noise", "refill_every"),
        "Devices and resume": ("gpuID", "accelerator", "devices", "num_nodes", "preprocessing_ncpus",
                               "pretrained_model", "continue_from", "remove_intermediate", "log_level"),
    },
    "PredictConfig": {
        "Output": ("output_dir", "use_deconv_tomo", "denoise", "halves", "disagreement_map"),
        "Tiles and devices": ("cube_size", "crop_size", "batch_size", "flips", "gpuID", "precision",
                              "batch_norm_statistics", "normalize_percentile", "log_level"),
    },
}


def option_group(section: type[BaseModel], name: str) -> str:
    """The group of setting ``name`` of ``section`` (see :data:`OPTION_GROUPS`)."""
    groups = OPTION_GROUPS.get(section.__name__, {})
    return next((g for g, names in groups.items() if name in names), list(groups)[-1] if groups else "Options")


class IsoNetConfig(Section):
    """All settings, one section per command."""

    io: IOConfig = Field(default_factory=IOConfig)
    prepare_star: PrepareStarConfig = Field(default_factory=PrepareStarConfig)
    prepare_subtomo_star: PrepareSubtomoStarConfig = Field(default_factory=PrepareSubtomoStarConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    deconv: DeconvConfig = Field(default_factory=DeconvConfig)
    make_mask: MaskConfig = Field(default_factory=MaskConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line that names each bad setting and why, e.g. ``--pixel_size -1: must be > 0``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
        value = err.get("input")
        msg = err["msg"].replace("Value error, ", "")
        shown = f" {value!r}" if not isinstance(value, (dict, BaseModel)) and loc else ""
        where = source.rstrip(".-")  # a check of several settings together has no location
        parts.append(f"{source}{loc}{shown}: {msg}" if loc else f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def presets() -> dict[str, Path]:
    """The YAML presets shipped in the package (``conf/``), by name: ``{"n2n": .../n2n.yaml, ...}``."""
    from importlib.resources import files

    folder = files("isonet_pl.conf")
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def load_config(path: str | Path | None = None) -> IsoNetConfig:
    """Defaults, overridden by a YAML file with sections named after the commands.

    ``path`` is a file, or the name of a preset shipped with isonet-pl (``n2n``, ``demo``, ...; see
    :func:`presets`) when no such file exists.
    """
    if path is None:
        return IsoNetConfig()
    path = Path(path)
    shipped = presets()
    if not path.is_file() and str(path) in shipped:
        path = shipped[str(path)]
    if not path.is_file():
        raise InputError("config file does not exist", path,
                         f"check --config (a YAML file, or a preset: {', '.join(sorted(shipped))})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML ({str(exc).splitlines()[0]})", path, "fix the file") from None
    if not isinstance(data, dict):
        raise InputError("expected sections (mapping) at the top level", path, "see conf/default.yaml")
    try:
        return IsoNetConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, ""), path, "see conf/default.yaml for the keys") from None


def save_config(cfg: IsoNetConfig, path: str | Path) -> None:
    """Write all settings to a YAML file that :func:`load_config` reads back."""
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def with_overrides(section: Section, overrides: dict[str, Any], source: str = "--") -> Section:
    """A copy of ``section`` with the non-None ``overrides`` applied and validated.

    Raises
    ------
    InputError
        Naming the option and the rule it breaks.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    values = section.model_dump()
    values.update(given)
    try:
        merged = type(section).model_validate(values)
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, source), fix="see --help") from None
    # the settings given explicitly (config file or options), as pydantic's model_fields_set
    object.__setattr__(merged, "__pydantic_fields_set__", set(section.model_fields_set) | set(given))
    return merged


def default_yaml(cfg: IsoNetConfig | None = None) -> str:
    """The text of ``conf/default.yaml`` (or of ``cfg``'s settings): every section and key, with its help as a
    comment."""
    lines = ["# isonet-pl settings: every command's options with their defaults.",
             "# Use with `isonet-pl --config FILE <command>`; command-line options override it.", ""]
    if cfg is not None:
        lines[0] = "# isonet-pl settings: every command's options (defaults overridden by the --config file)."
    cfg = cfg or IsoNetConfig()
    for name in IsoNetConfig.model_fields:
        section = getattr(cfg, name)
        lines.append(f"{name}:  # {type(section).__doc__.splitlines()[0]}")
        for key, info in type(section).model_fields.items():
            value = yaml.safe_dump(section.model_dump(mode="json")[key], default_flow_style=True).strip()
            value = value.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"  {key}: {value}  # {info.description}")
        lines.append("")
    return "\n".join(lines)
