"""What refine shows: the progress bar, loggers, the loss plot and the resume hint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from isonet_pl.io.paths import atomic_path

logger = logging.getLogger(__name__)


#: Lightning warnings that are expected here: the state folder is reused on purpose; a deprecation inside Lightning.
SPURIOUS_WARNINGS = (r"Checkpoint directory .* exists and is not empty", r".*isinstance\(treespec, LeafSpec\).*",
                     r"The dirpath has changed from")


def resume_hint(iteration: int, subtomo_star, result_dir: Path) -> str:
    """What an interrupted refine says: where it stopped and the command that resumes it."""
    return (f"during iteration {iteration}; completed iterations and epochs are saved. Resume with: isonet-pl "
            f"refine {subtomo_star} --continue_from {result_dir}")


def next_step(subtomo_star, model: Path) -> str:
    """What a finished refine says to run next: predict on the tomogram table the subtomograms came from
    (``_rlnTomogramStarFile``, recorded by extract), or on ``TOMOGRAMS_STAR`` when the table does not say."""
    from isonet_pl.io.star import Col, read_star

    try:
        table = read_star(subtomo_star, required=(Col.IMAGE,))
        stars = {str(table.resolve(v)) for v in table.df[Col.TOMOGRAM_STAR]} if Col.TOMOGRAM_STAR in table.df \
            else set()
    except Exception:  # a message only: never fail a finished run on it
        stars = set()
    stars.discard("None")
    star = stars.pop() if len(stars) == 1 else "TOMOGRAMS_STAR"
    return f"isonet-pl predict {star} {model}"


def duration(seconds: float) -> str:
    """``45 s``, ``12 min`` or ``3.2 h``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def progress_bar(iteration: int, iterations: int, epochs: int):
    """Lightning's bar labelled ``iteration k/N · epoch e/E``, without ``v_num`` and without validation bars
    (their losses show on the training bar); in logs (no terminal) it is redrawn every 10 steps only."""
    import sys

    from pytorch_lightning.callbacks import TQDMProgressBar
    from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm

    class Bar(TQDMProgressBar):
        def on_train_epoch_start(self, trainer, *args) -> None:
            super().on_train_epoch_start(trainer, *args)
            epoch = trainer.current_epoch - (iteration - 1) * epochs + 1
            self.train_progress_bar.set_description(f"iteration {iteration}/{iterations} · epoch {epoch}/{epochs}")

        def init_validation_tqdm(self):
            return Tqdm(disable=True)

        def get_metrics(self, trainer, pl_module):
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)
            return metrics

    return Bar(refresh_rate=1 if sys.stderr.isatty() else 10)


def loggers(result_dir: Path, it: int) -> list:
    """CSV logs always, TensorBoard logs too when tensorboard is installed."""
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(result_dir, name="logs", version=f"iter{it:02d}")]
    try:
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(result_dir, name="tensorboard", version=f"iter{it:02d}"))
    except ImportError:
        pass
    return loggers


def epoch_losses(csv: Path, it: int, epochs: int) -> dict[str, list[float]]:
    """Per-epoch training and validation losses of iteration ``it`` from Lightning's CSV log."""
    import csv as csvlib

    train, val = {}, {}
    if csv.exists():
        with open(csv) as fh:
            for row in csvlib.DictReader(fh):
                epoch = int(float(row.get("epoch") or -1))
                if not (it - 1) * epochs <= epoch < it * epochs:
                    continue
                if row.get("train/loss_epoch"):
                    train[epoch] = float(row["train/loss_epoch"])
                if row.get("val/loss"):
                    val[epoch] = float(row["val/loss"])
    return {"train": [train[k] for k in sorted(train)], "val": [val[k] for k in sorted(val)]}


def plot_losses(result_dir: Path) -> None:
    """losses.svg: training and validation loss per epoch over all iterations, with the iteration boundaries and
    noise-stage starts (:func:`isonet_pl.plot.loss_figure`)."""
    from isonet_pl.plot import loss_figure

    train, val, noise, epochs = [], [], [], 1
    for path in sorted(result_dir.glob("refine_iter*.json")):
        payload = json.loads(path.read_text())
        train += payload.get("losses", [])
        val += payload.get("val_losses", [])
        noise.append(float(payload.get("noise_level", 0.0)))
        epochs = int(payload.get("settings", {}).get("epochs", epochs))
    with atomic_path(result_dir / "losses.svg") as tmp:
        tmp.write_text(loss_figure(train, val, epochs, noise))
