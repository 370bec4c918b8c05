"""deconv: CTF-deconvolve the tomograms of a STAR file (Zarr for the pipeline, MRC for viewing)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import psutil

from isonet_pl.compute import dask_context, progress_bar, usable_cpus
from isonet_pl.config import DeconvConfig, IOConfig
from isonet_pl.errors import InputError
from isonet_pl.io.formats import read_tomogram_star
from isonet_pl.io.paths import check_output_dir, remove
from isonet_pl.io.star import (
    DECONV_COLUMN,
    DECONV_HALF_COLUMNS,
    HALF_COLUMNS,
    MICROSCOPE_COLUMNS,
    TOMOGRAM_COLUMN,
    Col,
    StarTable,
)
from isonet_pl.io.zarr_store import (
    NonFiniteError,
    TomogramStore,
    VolumeStats,
    write_tomogram,
)
from isonet_pl.preprocess.ctf import Microscope
from isonet_pl.preprocess.deconv import DeconvParams, deconvolve_chunked, deconvolve_volume, match_intensity
from isonet_pl.preprocess.spectral import MAX_MISFIT, NoNoiseEstimate, estimate_spectra, refusals, wiener_denoise
from isonet_pl.preprocess.split import MAX_PLANE_CORRELATION, plane_half
from isonet_pl.project import Tomogram, check_writable, tomograms

logger = logging.getLogger(__name__)

#: Bytes the whole-volume mode needs per voxel: input, spectrum, filter, output and FFT work space
#: (bench/perf/preprocess.py measured a peak of 11.4 GiB for a 2 GiB tomogram).
WHOLE_VOLUME_BYTES_PER_VOXEL = 24
DEFAULT_CHUNK = 256
#: Our columns of the deconvolved even/odd halves (RELION-5 has none for them).


def memory_budget_bytes(cfg: DeconvConfig) -> int:
    """The memory the whole-volume mode may use: ``memory_budget`` GiB, or half of the available RAM."""
    if cfg.memory_budget is not None:
        return int(cfg.memory_budget * 2**30)
    return int(psutil.virtual_memory().available // 2)


def filter_params(table: StarTable, row: int, cfg: DeconvConfig) -> DeconvParams | None:
    """The filter parameters of one row (None when its defocus is 0: no CTF to correct)."""
    df = table.df
    pixel_size = float(df[Col.PIXEL_SIZE].iloc[row]) if Col.PIXEL_SIZE in df.columns else 0.0
    if pixel_size <= 0:
        raise InputError(f"row {row + 1} has pixel size {pixel_size} Å", table.path, "set _rlnPixelSize > 0")
    defocus = float(df[Col.DEFOCUS].iloc[row]) if Col.DEFOCUS in df.columns else 0.0
    if defocus == 0:
        return None
    if defocus < 0:
        raise InputError(f"row {row + 1} has a negative defocus {defocus} Å", table.path,
                         "give the defocus in Å, underfocus positive")
    snrfalloff = float(df[Col.SNR_FALLOFF].iloc[row])
    strength = float(df[Col.DECONV_STRENGTH].iloc[row])
    if snrfalloff <= 0:
        raise InputError(f"row {row + 1} has snrfalloff {snrfalloff}", table.path, "use a value > 0 (e.g. 1.0)")
    return DeconvParams(pixel_size=pixel_size, defocus=defocus, microscope=microscope_of(table, row, cfg),
                        snrfalloff=snrfalloff, deconvstrength=strength, highpassnyquist=cfg.highpassnyquist)


#: The deconv option of each Microscope field (the default for rows without the STAR column).
_MICROSCOPE_OPTIONS = {"voltage_kv": "voltage", "cs_mm": "cs", "amplitude_contrast": "amplitude_contrast",
                       "phase_shift_deg": "phaseshift"}


def microscope_of(table: StarTable, row: int, cfg: DeconvConfig) -> Microscope:
    """The microscope of one row: its STAR columns (``_rlnVoltage``, ``_rlnSphericalAberration``,
    ``_rlnAmplitudeContrast``, ``_rlnPhaseShift``) where present, else the options; an option given
    on the command line that disagrees with the row is warned about (the row wins)."""
    values = {}
    for column, name in MICROSCOPE_COLUMNS.items():
        option = _MICROSCOPE_OPTIONS[name]
        given = getattr(cfg, option)
        if column in table.df.columns:
            values[name] = float(table.df[column].iloc[row])
            if option in cfg.model_fields_set and abs(values[name] - given) > 1e-9 * max(1.0, abs(given)):
                logger.warning("row %d: _%s %g in %s is used, not --%s %g", row + 1, column, values[name],
                               table.path.name, option, given)
        else:
            values[name] = float(given)
    return Microscope(**values)


def _check_moments(mean: float, std: float, source: Path) -> None:
    if not np.isfinite(mean) or not np.isfinite(std):
        raise InputError("tomogram contains NaN or infinite values", source, "fix or re-reconstruct it")
    if std == 0:
        raise InputError("tomogram is constant (standard deviation 0)", source, "check the reconstruction")


def deconvolve_store(store: TomogramStore, params: DeconvParams, out_zarr: Path, cfg: DeconvConfig, io: IOConfig,
                     source: Path, progress: bool = False) -> str:
    """Deconvolve one tomogram store into ``out_zarr``; returns the mode used ("whole volume" or "chunked")."""
    shape = store.shape
    need = WHOLE_VOLUME_BYTES_PER_VOXEL * int(np.prod(shape))
    whole = cfg.chunk_size is None and need <= memory_budget_bytes(cfg)
    common = {"voxel_size": store.voxel_size, "origin": store.origin, "chunks": io.zarr_chunks,
              "levels": io.zarr_levels, "compression_level": io.compression_level,
              "extra": {"deconv": params.as_dict()}}
    if whole:
        vol = np.asarray(store.dask().compute(), dtype=np.float32)
        _check_moments(float(vol.mean(dtype=np.float64)), float(vol.std(dtype=np.float64)), source)
        out = deconvolve_volume(vol, params, workers=cfg.ncpu or usable_cpus())
        del vol
        write_tomogram(out, out_zarr, **common, require_finite=True)
        return "whole volume"
    chunk = cfg.chunk_size or DEFAULT_CHUNK
    plan = deconvolve_chunked(store.zarr_array(0), params, chunk_size=chunk, overlap_rate=cfg.overlap_rate)
    _check_moments(plan.mean, plan.std, source)
    unscaled = out_zarr.with_name(out_zarr.name + ".unscaled")
    remove(unscaled)  # a full-size leftover of a killed run
    try:
        stats = VolumeStats()
        with progress_bar(progress, f"deconv {source.name}"):
            write_tomogram(plan.filtered, unscaled, store.voxel_size, store.origin, chunks=io.zarr_chunks, levels=1,
                           compression_level=1, stats=stats)
        raw = TomogramStore(unscaled, store.voxel_size, store.origin, 1).dask()
        scaled = raw.map_blocks(match_intensity, stats.std, plan.mean, plan.std, dtype=np.float32)
        write_tomogram(scaled, out_zarr, **common, require_finite=True)
    finally:
        remove(unscaled)
    return f"chunked ({chunk}^3 blocks, overlap {cfg.overlap_rate:g})"


def _has_halves(tomo: Tomogram) -> bool:
    return any(tomo.path(h) is not None for h in HALF_COLUMNS)


def _outputs(tomo: Tomogram, out_dir: Path) -> list[tuple[str, str, Path]]:
    """(source column, output column, output file) of a row: the tomogram, then its even/odd halves when the
    table has them (same filter, own sub-folders), each checked by :meth:`Tomogram.output_file`."""
    jobs = [(TOMOGRAM_COLUMN, DECONV_COLUMN, out_dir)]
    jobs += [(half, deconv_half, out_dir / sub) for half, deconv_half, sub in zip(
        HALF_COLUMNS, DECONV_HALF_COLUMNS, ("half1", "half2"), strict=False) if tomo.path(half) is not None]
    return [(column, out_column, tomo.output_file(folder, f"{tomo.key}{tomo.path(column, required=True).suffix}",
                                                  out_column, "--deconv_folder"))
            for column, out_column, folder in jobs]


def _plane_outputs(tomo: Tomogram, out_dir: Path) -> list[tuple[str, Path]]:
    """(half column, output file) of the plane halves of a row without halves, each checked by
    :meth:`Tomogram.output_file`, with the files their deconvolution would write."""
    name = f"{tomo.key}{tomo.tomogram.suffix}"
    for sub, column in zip(("half1", "half2"), DECONV_HALF_COLUMNS, strict=True):
        tomo.output_file(out_dir / sub, name, column, "--deconv_folder")
    return [(column, tomo.output_file(out_dir / "planes" / sub, name, column, "--deconv_folder"))
            for sub, column in zip(("half1", "half2"), HALF_COLUMNS, strict=True)]


def _plane_halves(tomo: Tomogram, out_dir: Path, cfg: DeconvConfig, io: IOConfig) -> str | None:
    """Give a row without halves two made of its tomogram's even and odd Y planes
    (:mod:`isonet_pl.preprocess.split`), written to ``<deconv_folder>/planes/half1|half2/`` and named in its half
    columns, where the tilt-axis noise model says that neighbouring planes' noise is independent. Returns why they
    were not made (None when they were)."""
    store = tomo.store()
    t0 = time.perf_counter()
    with dask_context(cfg.ncpu, cfg.dask_scheduler):
        try:
            estimate = estimate_spectra(store.dask(), tomo.tilt_range)
        except NoNoiseEstimate as exc:
            return str(exc)
        if not estimate.misfit <= MAX_MISFIT:
            return (f"the tilt-axis noise model does not fit its specimen slices (residual {estimate.misfit:.2f}, at "
                    f"most {MAX_MISFIT}): its noise is not a back-projection's, planes may share it")
        if estimate.plane_correlation > MAX_PLANE_CORRELATION:
            return (f"the noise of its neighbouring Y planes correlates {estimate.plane_correlation:.2f} (over "
                    f"{MAX_PLANE_CORRELATION}; interpolated along Y, e.g. by the alignment?), so its plane halves "
                    "would share noise")
        for k, (column, out_mrc) in enumerate(_plane_outputs(tomo, out_dir)):
            check_output_dir(out_mrc.parent)
            out_zarr = tomo.output_zarr(out_mrc)
            write_tomogram(plane_half(store.dask(), k), out_zarr, store.voxel_size, store.origin,
                           chunks=io.zarr_chunks, levels=io.zarr_levels, compression_level=io.compression_level,
                           extra={"plane_half": f"{'odd' if k else 'even'} Y planes of {tomo.tomogram.name}"},
                           require_finite=True)
            tomo.record_output(out_zarr, out_mrc, column)
    logger.info("row %d (%s): even/odd halves made of its even and odd Y planes -> %s in %.1f s (neighbouring "
                "planes' noise correlates %.2f)", tomo.number, tomo.tomogram.name, out_dir / "planes",
                time.perf_counter() - t0, estimate.plane_correlation)
    return None


def _noise_filter_row(tomo: Tomogram, out_dir: Path, cfg: DeconvConfig, io: IOConfig) -> NoNoiseEstimate | None:
    """A row without a CTF: write its Wiener-filtered tomogram (weights from its own noise estimate, measured region
    only: the empty slices above and below the specimen, else the tilt-axis model of the specimen slices,
    :mod:`isonet_pl.preprocess.spectral`) as its deconvolved tomogram. Returns why it was not filtered (no reliable
    estimate: the row is left as it is), else None."""
    source = tomo.tomogram
    out_mrc = tomo.output_file(out_dir, f"{tomo.key}{source.suffix}", DECONV_COLUMN, "--deconv_folder")
    t0 = time.perf_counter()
    store = tomo.store()
    with dask_context(cfg.ncpu, cfg.dask_scheduler):
        try:
            filtered, estimate = wiener_denoise(store.dask(), tomo.tilt_range, corrected=False)
        except NoNoiseEstimate as exc:
            logger.info("row %d (%s): defocus 0 and no reliable noise estimate (%s): not filtered", tomo.number,
                        source.name, exc)
            return exc
        out_zarr = tomo.output_zarr(out_mrc)
        write_tomogram(filtered, out_zarr, store.voxel_size, store.origin, chunks=io.zarr_chunks,
                       levels=io.zarr_levels, compression_level=io.compression_level,
                       extra={"deconv": {"noise_filter": estimate.describe()}}, require_finite=True)
    tomo.record_output(out_zarr, out_mrc, DECONV_COLUMN)
    logger.info("no CTF (defocus 0): Wiener-filtered %s -> %s in %.1f s; %s", source.name, out_mrc,
                time.perf_counter() - t0, estimate.describe())
    return None


def deconv(star_file: str | Path, cfg: DeconvConfig | None = None, io: IOConfig | None = None,
           tomo_idx: str | None = None, progress: bool = False) -> Path:
    """CTF-deconvolve the selected tomograms of a STAR file, as IsoNet 0.2's ``deconv``.

    For each selected row with a defocus: the filter of SPEC §3 (with the row's
    ``_rlnSnrFalloff`` / ``_rlnDeconvStrength``, overridden by ``cfg``), applied to the whole
    volume in one FFT when it fits ``cfg.memory_budget``, else in overlapping blocks. Writes
    ``<deconv_folder>/<tomogram file name>`` (MRC) and its Zarr copy, and sets
    ``_rlnDeconvTomoName``; even/odd halves (RELION-5's half columns) go to
    ``<deconv_folder>/half1|half2/`` and ``_rlnDeconvTomoHalf1|2``. The STAR file is rewritten
    (atomically) after each volume. Rows without halves first get halves made of their even and odd
    Y planes (``cfg.plane_halves``, :func:`_plane_halves`), deconvolved like real ones; rows without a CTF
    (defocus 0) and without halves of either kind get the data-driven Wiener filter instead
    (``cfg.noise_filter``, :func:`_noise_filter_row`).

    Returns
    -------
    Path
        The STAR file.
    """
    cfg = cfg or DeconvConfig()
    io = io or IOConfig()
    table = read_tomogram_star(star_file)
    rows = tomograms(table, io, tomo_idx)
    check_writable(table, io)
    out_dir = check_output_dir(cfg.deconv_folder, option="--deconv_folder")
    table.ensure_column(Col.SNR_FALLOFF, 1.0)
    table.ensure_column(Col.DECONV_STRENGTH, 1.0)
    table.ensure_column(DECONV_COLUMN, "None")
    for tomo in rows:  # before any work: no output replaces a file the table names
        _outputs(tomo, out_dir)
        if cfg.plane_halves and not _has_halves(tomo):
            _plane_outputs(tomo, out_dir)
    unfiltered: list[tuple[str, NoNoiseEstimate]] = []
    no_planes: list[str] = []
    for tomo in rows:
        row = tomo.row
        planes = False
        if cfg.plane_halves and not _has_halves(tomo):
            reason = _plane_halves(tomo, out_dir, cfg, io)
            planes = reason is None
            if reason is not None:
                no_planes.append(f"row {tomo.number} ({tomo.tomogram.name}): {reason}")
        if cfg.snrfalloff is not None:
            table.set_value(row, Col.SNR_FALLOFF, cfg.snrfalloff)
        if cfg.deconvstrength is not None:
            table.set_value(row, Col.DECONV_STRENGTH, cfg.deconvstrength)
        params = filter_params(table, row, cfg)
        if params is None:
            halves = _has_halves(tomo)
            if planes:
                logger.info("row %d: defocus is 0, no CTF to deconvolve: the even/odd mode denoises from its plane "
                            "halves", row + 1)
            elif cfg.noise_filter and not halves:
                reason = _noise_filter_row(tomo, out_dir, cfg, io)
                if reason is not None:
                    unfiltered.append((f"row {tomo.number}, {tomo.tomogram.name}", reason))
            else:
                logger.warning("row %d: defocus is 0, no CTF to deconvolve: skipped (%s)", row + 1,
                               "the even/odd mode denoises from its halves" if halves else "--noise_filter false")
            continue
        for column, out_column, out_mrc in _outputs(tomo, out_dir):
            source = tomo.path(column, required=True)
            check_output_dir(out_mrc.parent)
            t0 = time.perf_counter()
            store = tomo.store(column)
            out_zarr = tomo.output_zarr(out_mrc)
            with dask_context(cfg.ncpu, cfg.dask_scheduler):
                try:
                    mode = deconvolve_store(store, params, out_zarr, cfg, io, source, progress)
                except NonFiniteError:
                    used = ", ".join(f"{k} {v:g}" for k, v in params.as_dict().items())
                    raise InputError(f"row {row + 1}: deconvolution gave NaN or infinite values (nothing written)",
                                     table.path, f"check the row's values and the microscope options ({used})") \
                        from None
            tomo.record_output(out_zarr, out_mrc, out_column)
            logger.info("deconvolved %s -> %s in %.1f s (%s; pixel %g Å, defocus %.0f Å, %s, snrfalloff %g, "
                        "strength %g)", source.name, out_mrc, time.perf_counter() - t0, mode, params.pixel_size,
                        params.defocus, params.microscope.describe(), params.snrfalloff, params.deconvstrength)
    table.write()
    if no_planes:  # once per command
        logger.warning("%d of %d row(s) without even/odd halves got no plane halves, and take IsoNet's "
                       "single-tomogram mode (refine --method auto): %s. Remedy: reconstruct them with weighted "
                       "back-projection from a tilt series aligned without interpolation along the tilt axis Y, or "
                       "reconstruct even/odd halves (prepare_star --even/--odd)", len(no_planes), len(rows),
                       "; ".join(no_planes))
    if unfiltered:  # once per command
        logger.warning("%s. Until then refine trains on, and predict corrects, their raw tomograms, noisier than a "
                       "low-pass of them", refusals(unfiltered, len(rows), "row(s) without a CTF"))
    return table.path
