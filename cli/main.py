"""``isonet-pl``: the command line. Each command parses, builds its settings, calls one workflow.

Errors in the input end the program with one line on stderr and exit code 1 (2 for a
usage error); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys

import click
from isonet_pl.cli.options import GroupedCommand, section_options, tomo_idx_option

from isonet_pl import __version__
from isonet_pl.config import (
    DeconvConfig,
    ExtractConfig,
    IOConfig,
    MaskConfig,
    PredictConfig,
    PrepareStarConfig,
    PrepareSubtomoStarConfig,
    RefineConfig,
    Section,
    SimulateConfig,
    load_config,
    with_overrides,
)
from isonet_pl.errors import IsoNetError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_state = {"debug": False, "line_open": False}


class _LineTracker:
    """Wraps stdout/stderr to know whether the terminal (or merged log) is in the middle of a line, e.g. a
    progress bar drawn with carriage returns, so that an error line starts on a fresh line."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        if text:
            _state["line_open"] = not text.endswith("\n")
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _fresh_line() -> None:
    """End a line left open (by a progress bar) before writing a message."""
    if _state["line_open"]:
        sys.stderr.write("\n")
        sys.stderr.flush()


class _Group(click.Group):
    """Accepts ``prepare-star`` as well as IsoNet's ``prepare_star``."""

    def get_command(self, ctx, cmd_name):
        return super().get_command(ctx, cmd_name.replace("-", "_"))

    def list_commands(self, ctx):
        return list(self.commands)  # in the order of the workflow, not alphabetical


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="isonet-pl")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug messages).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--debug", is_flag=True, help="Show the full traceback of errors.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML settings file (sections named after the commands; see conf/default.yaml).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, debug: bool, config_path: str | None) -> None:
    """isonet-pl: missing-wedge correction and denoising of cryo-ET tomograms (the IsoNet workflow).

    \b
    Workflow: prepare_star -> deconv -> make_mask -> extract -> refine -> predict
    Try it on synthetic data:  isonet-pl simulate sim && isonet-pl prepare_star sim/tomos
    """
    _state["debug"] = debug
    level = logging.DEBUG if (verbose or debug) else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, force=True)
    for noisy in ("asyncio", "numcodecs", "fsspec", "PIL", "matplotlib", "distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _state["quiet_lightning"] = not (verbose or debug)
    logging.captureWarnings(True)  # Python warnings (Lightning's among them) go to the log, one line each
    ctx.obj = {"config_path": config_path}


def _quiet_lightning() -> None:
    """Lightning's tips and start-up chatter (INFO) only with -v; its progress bars stay. Lightning sets its
    loggers to INFO when imported, so this runs after the import."""
    import pytorch_lightning  # noqa: F401

    if _state.get("quiet_lightning", True):
        for name in ("pytorch_lightning", "lightning_fabric", "lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)


def settings(ctx: click.Context, section: str, options: dict) -> Section:
    """The settings of one command: defaults < ``--config`` file < command-line options."""
    cfg = ctx.obj.get("config") or load_config(ctx.obj.get("config_path"))
    ctx.obj["config"] = cfg
    resolved = with_overrides(getattr(cfg, section), options)
    changed = {k: v for k, v in resolved.model_dump().items() if v != type(resolved).model_fields[k].default}
    if changed:
        logging.getLogger("isonet_pl").info("%s settings other than the defaults: %s", section,
                                            ", ".join(f"{k}={v}" for k, v in changed.items()))
    return resolved


@cli.command("prepare_star", context_settings=CONTEXT)
@click.argument("folder_name", type=click.Path())
@section_options(PrepareStarConfig)
@click.pass_context
def prepare_star_cmd(ctx: click.Context, folder_name: str, **options) -> None:
    """Make a tomogram STAR file from FOLDER_NAME (all .mrc/.rec files in it)."""
    from isonet_pl.workflows.prepare import prepare_star

    prepare_star(folder_name, settings(ctx, "prepare_star", options))


@cli.command("prepare_subtomo_star", context_settings=CONTEXT)
@click.argument("folder_name", type=click.Path())
@section_options(PrepareSubtomoStarConfig)
@click.pass_context
def prepare_subtomo_star_cmd(ctx: click.Context, folder_name: str, **options) -> None:
    """Make a subtomogram STAR file from FOLDER_NAME (cubic MRC subtomograms made elsewhere)."""
    from isonet_pl.workflows.prepare import prepare_subtomo_star

    prepare_subtomo_star(folder_name, settings(ctx, "prepare_subtomo_star", options))


@cli.command("simulate", context_settings=CONTEXT)
@click.argument("out_dir", type=click.Path(file_okay=False))
@section_options(SimulateConfig)
@click.pass_context
def simulate_cmd(ctx: click.Context, out_dir: str, **options) -> None:
    """Write synthetic tomograms, their ground truth and a tomograms.star to OUT_DIR."""
    from isonet_pl.workflows.simulate import simulate

    simulate(out_dir, settings(ctx, "simulate", options))


@cli.command("deconv", context_settings=CONTEXT)
@click.argument("star_file", type=click.Path())
@tomo_idx_option
@section_options(DeconvConfig)
@click.pass_context
def deconv_cmd(ctx: click.Context, star_file: str, tomo_idx: str | None, **options) -> None:
    """CTF-deconvolve the tomograms of STAR_FILE (IsoNet's filter; chunked when memory is short)."""
    from isonet_pl.workflows.deconv import deconv

    deconv(star_file, settings(ctx, "deconv", options), settings(ctx, "io", {}), tomo_idx, progress=True)


@cli.command("make_mask", context_settings=CONTEXT)
@click.argument("star_file", type=click.Path())
@tomo_idx_option
@section_options(MaskConfig)
@click.pass_context
def make_mask_cmd(ctx: click.Context, star_file: str, tomo_idx: str | None, **options) -> None:
    """Make sampling masks for the tomograms of STAR_FILE (where subtomograms are drawn)."""
    from isonet_pl.workflows.mask import make_mask

    make_mask(star_file, settings(ctx, "make_mask", options), settings(ctx, "io", {}), tomo_idx, progress=True)


@cli.command("extract", context_settings=CONTEXT)
@click.argument("star_file", type=click.Path())
@tomo_idx_option
@section_options(ExtractConfig)
@click.pass_context
def extract_cmd(ctx: click.Context, star_file: str, tomo_idx: str | None, **options) -> None:
    """Extract training subtomograms from the tomograms of STAR_FILE (centres inside the masks)."""
    from isonet_pl.workflows.extract import extract

    extract(star_file, settings(ctx, "extract", options), settings(ctx, "io", {}), tomo_idx)


@cli.command("refine", cls=GroupedCommand, context_settings=CONTEXT)
@click.argument("subtomo_star", type=click.Path())
@section_options(RefineConfig)
@click.pass_context
def refine_cmd(ctx: click.Context, subtomo_star: str, **options) -> None:
    """Train the U-Net iteratively on the subtomograms of SUBTOMO_STAR (on one or many GPUs, or the CPU)."""
    from isonet_pl.workflows.refine import refine

    cfg = settings(ctx, "refine", options)
    _quiet_lightning()
    if cfg.log_level == "debug":
        logging.getLogger().setLevel(logging.DEBUG)
    refine(subtomo_star, cfg)


@cli.command("predict", cls=GroupedCommand, context_settings=CONTEXT)
@click.argument("star_file", type=click.Path())
@click.argument("model", type=click.Path())
@tomo_idx_option
@section_options(PredictConfig)
@click.pass_context
def predict_cmd(ctx: click.Context, star_file: str, model: str, tomo_idx: str | None, **options) -> None:
    """Correct the tomograms of STAR_FILE with the trained MODEL (a model_iterNN.ckpt)."""
    from isonet_pl.workflows.predict import predict

    cfg = settings(ctx, "predict", options)
    _quiet_lightning()
    if cfg.log_level == "debug":
        logging.getLogger().setLevel(logging.DEBUG)
    predict(star_file, model, cfg, settings(ctx, "io", {}), tomo_idx, progress=True)


@cli.command("convert", context_settings=CONTEXT)
@click.argument("star_file", type=click.Path())
@tomo_idx_option
@section_options(IOConfig)
@click.pass_context
def convert_cmd(ctx: click.Context, star_file: str, tomo_idx: str | None, **options) -> None:
    """Convert the tomograms of STAR_FILE to chunked OME-Zarr now (other commands do it on first use)."""
    from isonet_pl.workflows.convert import convert

    convert(star_file, settings(ctx, "io", options), tomo_idx)


@cli.command("gui", context_settings=CONTEXT)
@click.argument("project_dir", type=click.Path(file_okay=False, exists=True), default=".")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; 127.0.0.1 admits this machine only (0.0.0.0: all, still token-protected).")
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port to listen on [default: a free one].")
@click.option("--no-browser", "--no_browser", "no_browser", is_flag=True,
              help="Only print the URL; do not open a web browser.")
def gui_cmd(project_dir: str, host: str, port: int, no_browser: bool) -> None:
    """Serve the web GUI for the project in PROJECT_DIR [default: here]; open the printed URL (with its token)."""
    from isonet_pl.gui import serve

    serve(project_dir, host=host, port=port, open_browser=not no_browser,
          announce=lambda line: click.echo(line, err=True), commands=cli)


@cli.command("config", context_settings=CONTEXT)
@click.pass_context
def config_cmd(ctx: click.Context) -> None:
    """Print every setting as YAML: the defaults, or with --config FILE|PRESET its values (a starting point)."""
    from isonet_pl.config import default_yaml

    path = ctx.obj.get("config_path")
    click.echo(default_yaml(load_config(path) if path else None))


@cli.command("check", context_settings=CONTEXT)
def check_cmd() -> None:
    """Show the versions of the stack, CPU threads and CUDA devices."""
    from isonet_pl.system import system_report

    report = system_report()
    click.echo(f"isonet-pl {__version__} on Python {report['python']} ({report['platform']})")
    click.echo(f"CPU threads usable: {report['cpu_threads']}; torch threads: {report['torch_threads']}")
    click.echo(f"CPU bf16 instructions: {report['cpu_bf16']} (predict --precision auto times bf16 only with them); "
               f"huge pages for large tensors: {report['huge_pages']}")
    click.echo(f"torch CUDA build: {report['torch_cuda_build']}")
    click.echo(f"measured choices kept in: {report['machine_cache']} (delete to measure again)")
    if report["cuda_devices"]:
        click.echo("CUDA devices:\n  " + "\n  ".join(report["cuda_devices"]))
    else:
        click.echo("CUDA devices: none (training and prediction run on the CPU)")
    click.echo("packages: " + ", ".join(f"{k} {v}" for k, v in report["packages"].items()))


@cli.command("demo", context_settings=CONTEXT)
@click.argument("out_dir", type=click.Path(file_okay=False), default="demo_out")
@click.pass_context
def demo_cmd(ctx: click.Context, out_dir: str) -> None:
    """Run the workflow end to end on a synthetic tomogram in OUT_DIR and report the result."""
    from isonet_pl.demo import run_demo

    cfg = load_config(ctx.obj["config_path"]) if ctx.obj.get("config_path") else None  # None: conf/demo.yaml
    _quiet_lightning()
    for line in run_demo(out_dir, cfg):
        click.echo(line)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs :data:`cli` and turns errors into one line and an exit code."""
    from isonet_pl.heap import share_one_arena, use_huge_pages
    from isonet_pl.io.mrc import PROVENANCE

    share_one_arena()  # before any thread starts: predict's and refine's threads can then reuse freed memory
    use_huge_pages()  # before torch allocates: large tensors in 2 MiB pages
    PROVENANCE["command"] = "isonet-pl " + " ".join(sys.argv[1:] if argv is None else argv)  # MRC labels
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _LineTracker(sys.stdout), _LineTracker(sys.stderr)
    try:
        return _run(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _interrupted(exc: BaseException | None = None) -> int:
    """Ctrl-C (or the GUI's cancel): one line (the run's own, e.g. how to resume it), exit code 130."""
    _fresh_line()
    message = getattr(exc, "message", None) or "completed outputs are kept (refine resumes with --continue_from)"
    click.echo(f"Interrupted; {message}", err=True)
    return 130


def _run(argv: list[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="isonet-pl", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            return _interrupted(exc.__context__)
        _fresh_line()
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        _fresh_line()
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt as exc:
        if _state["debug"]:
            raise
        return _interrupted(exc)
    except IsoNetError as exc:
        if _state["debug"]:
            raise
        _fresh_line()
        click.echo(f"Error: {exc}", err=True)
        return 1
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        if _state["debug"]:
            raise
        _fresh_line()
        click.echo(f"Error: {exc.__class__.__name__}: {exc} (run with --debug for the traceback)", err=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
