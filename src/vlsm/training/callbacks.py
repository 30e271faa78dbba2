"""Lightning callbacks of `vlsm train`."""
from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Optional

import lightning as L

from vlsm.runs import METRICS_FIELDS
from vlsm.utils import write_text_atomic

log = logging.getLogger("vlsm")


class MetricsCSV(L.Callback):
    """One learning-curve row per epoch in RUN/metrics.csv (and in the log): epoch, step, train_loss,
    val_loss, val_dice, lr, seconds. A resumed run continues the file from its checkpoint's epoch
    (``resumed_epoch``): rows of later epochs (written before a kill, not in the checkpoint) are dropped,
    since the resumed run computes them again."""

    def __init__(self, path: Path, resumed_epoch: Optional[int] = None):
        self.path = Path(path)
        self.start = time.time()
        self.last_epoch = -1
        if self.path.is_file() and resumed_epoch is not None:
            rows = []
            with self.path.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    try:
                        complete = all(row.get(k) is not None for k in METRICS_FIELDS)
                        if complete and int(row["epoch"]) <= resumed_epoch:
                            rows.append(row)
                    except ValueError:  # a line cut by a kill
                        continue
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=METRICS_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            write_text_atomic(self.path, buf.getvalue())
            self.last_epoch = max((int(r["epoch"]) for r in rows), default=-1)

    def on_train_epoch_end(self, trainer, pl_module):
        # Lightning replays this hook when it resumes from an end-of-epoch checkpoint.
        if not trainer.is_global_zero or trainer.sanity_checking or trainer.current_epoch <= self.last_epoch:
            return
        self.last_epoch = trainer.current_epoch
        metrics = trainer.callback_metrics

        def value(key):
            v = metrics.get(key)
            return f"{float(v):.6f}" if v is not None else ""

        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else ""
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "train_loss": value("train_loss_epoch"), "val_loss": value("val_loss"),
               "val_dice": value("val_dice"), "lr": f"{lr:.3g}", "seconds": f"{time.time() - self.start:.1f}"}
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRICS_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        log.info("epoch %s: train_loss %s val_loss %s val_dice %s lr %s", row["epoch"],
                 row["train_loss"], row["val_loss"], row["val_dice"], row["lr"])


class ReloadBestEachEpoch(L.Callback):
    """``--reload-best-each-epoch``: after each epoch's validation, training continues from the best
    weights so far, as the paper's UNet-D script does (modeling_UNet_D/train.py: after its early-stopping
    check, every epoch ends with ``model.load_state_dict(torch.load(checkpoint.pt))``, the checkpoint of
    the lowest validation loss so far).

    What is reloaded is what the script reloads: the model's weights (parameters and buffers, BatchNorm's
    running statistics included) from ``best``'s checkpoint; the optimizer (AdamW's moments and step
    count), the learning rate and the epoch counter go on as they are. An epoch that improves on the best
    keeps its own weights (it becomes the best; ``best``, a ModelCheckpoint, saves it right after).
    Improvement is ``best``'s own rule (strictly better ``monitor`` in its mode), decided from its state
    before it sees this epoch: this callback runs before the checkpoint callbacks, so ``last.ckpt`` holds
    the weights the next epoch starts from and a resumed run continues exactly.
    """

    def __init__(self, best, model_dir: Optional[Path] = None):
        self.best = best
        # a finished run resumed for more epochs may have had best.ckpt pruned (--keep-checkpoints):
        # its best weights are then the run's model/ folder
        self.model_dir = model_dir

    def _improves(self, current) -> bool:
        import torch

        best = self.best.best_model_score
        if best is None:
            return True
        better = torch.lt if self.best.mode == "min" else torch.gt
        return bool(better(torch.as_tensor(current).float().cpu(), best.float().cpu()))

    def on_train_epoch_end(self, trainer, pl_module):
        # Lightning replays this hook when it resumes from an end-of-epoch checkpoint, whose weights are
        # already the ones the next epoch starts from
        if trainer.sanity_checking or trainer.fit_loop.restarting:
            return
        current = trainer.callback_metrics.get(self.best.monitor)
        if current is None or self._improves(current) or not self.best.best_model_path:
            return
        path = load_best_weights(pl_module, self.best.best_model_path, self.model_dir)
        log.info("epoch %d: no improvement of %s; continuing from the best weights (%s)", trainer.current_epoch,
                 self.best.monitor, Path(path).name)


def load_best_weights(task, best_checkpoint, model_dir) -> Path:
    """Put a run's best weights into ``task`` (a SegmentationTask) and return the file or folder read:
    ``best_checkpoint`` (a slim one completed from the live model after its digest check), or, when
    --keep-checkpoints pruned it from a finished run that was resumed for more epochs, the run's model/
    folder (the same best weights)."""
    from vlsm.runs import read_training_checkpoint
    from vlsm.training.slim_checkpoints import complete_checkpoint

    if best_checkpoint and Path(best_checkpoint).is_file():
        checkpoint = read_training_checkpoint(best_checkpoint)
        task.load_state_dict(complete_checkpoint(task.model, checkpoint, source=str(best_checkpoint)))
        return Path(best_checkpoint)
    from vlsm.models import load_pretrained

    task.model.load_state_dict(load_pretrained(model_dir).state_dict())
    return Path(model_dir)
