"""LightningModule that trains any registered model with BCE + soft Dice on logits."""
from __future__ import annotations

import lightning as L
import torch

from vlsm.evaluation.metrics import dice_from_counts
from vlsm.models import SegmentationModel
from vlsm.training.feature_cache import SAMPLE_KEY
from vlsm.training.losses import BCEDiceLoss
from vlsm.training.sampling import seed_epoch
from vlsm.training.slim_checkpoints import SlimCheckpoints


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def batch_dice(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Hard Dice per image at the model's resolution (validation signal; final numbers are
    computed at each image's original size by vlsm.evaluation), with its empty-mask policy."""
    pred = (torch.sigmoid(logits.float()) > threshold).flatten(1).float()
    target = target.flatten(1).float()
    return dice_from_counts((pred * target).sum(1), pred.sum(1), target.sum(1))


class SegmentationTask(SlimCheckpoints, L.LightningModule):
    """Trains ``model`` with AdamW on ``bce_weight`` x BCE + ``dice_weight`` x soft Dice.

    Validation logs ``val_loss``, ``val_bce`` (the BCE-with-logits part alone, what the paper's UNet-D
    script validates on) and ``val_dice`` (hard Dice at ``dice_threshold``, the evaluation threshold, as
    medvlsm validates with its model's threshold). ``scheduler``: ``"plateau"`` (ReduceLROnPlateau on
    val_loss) or ``"none"`` (a constant learning rate).
    """

    def __init__(self, model: SegmentationModel, *, lr: float = 1e-3, weight_decay: float = 1e-4,
                 bce_weight: float = 1.0, dice_weight: float = 1.0, scheduler_patience: int = 5,
                 scheduler_factor: float = 0.5, model_spec: dict | None = None, seed: int | None = None,
                 scheduler: str = "plateau", dice_threshold: float = 0.5, dice_reduction: str = "image"):
        super().__init__()
        self.model = model
        # every epoch's global random draws (dropout) come from (seed, epoch): a resumed run repeats them
        self.seed = seed
        self.dice_threshold = dice_threshold
        self.loss_fn = BCEDiceLoss(bce_weight, dice_weight, dice_reduction)
        # The spec lets a bare .ckpt be rebuilt later without the experiment file.
        self.save_hyperparameters({"model_spec": model_spec or model.spec.to_dict(), "lr": lr,
                                   "weight_decay": weight_decay, "bce_weight": bce_weight,
                                   "dice_weight": dice_weight, "scheduler_patience": scheduler_patience,
                                   "scheduler_factor": scheduler_factor, "scheduler": scheduler,
                                   "dice_threshold": dice_threshold, "dice_reduction": dice_reduction})

    @classmethod
    def from_config(cls, model: SegmentationModel, cfg) -> "SegmentationTask":
        """The task of an experiment (:class:`vlsm.config.ExperimentConfig`, checked): its recipe's loss, optimiser
        and schedule; the validation Dice at the evaluation threshold."""
        t = cfg.train
        return cls(model, lr=t.lr, weight_decay=t.weight_decay, bce_weight=t.bce_weight, dice_weight=t.dice_weight,
                   scheduler_patience=t.scheduler_patience, scheduler_factor=t.scheduler_factor, seed=t.seed,
                   scheduler=t.scheduler, dice_threshold=cfg.eval.threshold, dice_reduction=t.dice_reduction)

    #: a FeatureCache when the frozen image encoder's outputs are reused across epochs (set by training.run)
    feature_cache = None

    def forward(self, batch, stage: str | None = None):
        pixels, ids, mask = batch["pixel_values"], batch["input_ids"], batch["attention_mask"]
        cache = self.feature_cache
        if cache is None or stage is None or SAMPLE_KEY not in batch or not self.model.has_frozen_image_features():
            return self.model(pixels, ids, mask)
        # a batch seen before: its stored features; else the frozen encoder runs here, as in the plain pass
        features = cache.features(stage, batch[SAMPLE_KEY], lambda: self.model.frozen_image_features(pixels),
                                  pixels.device)
        return self.model.forward_with_features(pixels, features, ids, mask)

    def _step(self, batch, stage: str):
        logits = self(batch, stage)
        losses = self.loss_fn(logits, batch["mask"])
        bs = batch["pixel_values"].shape[0]
        on_step = stage == "train"
        # sync_dist: under DDP the epoch values average over all ranks' images
        self.log(f"{stage}_loss", losses["loss"], prog_bar=True, on_step=on_step, on_epoch=True,
                 batch_size=bs, sync_dist=True)
        if stage != "train":
            self.log(f"{stage}_bce", losses["bce"], on_epoch=True, batch_size=bs, sync_dist=True)
            self.log(f"{stage}_dice", batch_dice(logits, batch["mask"], self.dice_threshold).mean(), prog_bar=True,
                     on_epoch=True, batch_size=bs, sync_dist=True)
        return losses["loss"]

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def on_train_epoch_start(self):
        if self.seed is not None:
            seed_epoch(self.seed, self.current_epoch)
        # Datasets re-seed prompt sampling and augmentation per epoch (reproducible with workers; the
        # EpochShuffleSampler has already done so before the workers prefetched, this covers DDP's sampler).
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        for ds in getattr(dataset, "datasets", [dataset]):
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(self.current_epoch)

    def on_train_epoch_end(self):
        # ReduceLROnPlateau steps here, before ModelCheckpoint saves the epoch (Lightning would step it
        # after the save, and skips it when it replays the saved epoch's end on resume: one epoch late).
        trainer = self.trainer
        if trainer.sanity_checking or trainer.fit_loop.restarting:
            return
        val_loss = trainer.callback_metrics.get("val_loss")
        if val_loss is None:  # no validation this epoch
            return
        for scheduler in _as_list(self.lr_schedulers()):
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(float(val_loss))

    def lr_scheduler_step(self, scheduler, metric):
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            return  # stepped in on_train_epoch_end
        scheduler.step() if metric is None else scheduler.step(metric)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"model {self.model.spec.name!r} has no trainable parameters")
        hp = self.hparams
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.get("scheduler", "plateau") != "plateau":
            # a constant rate (the UNet-D script builds a ReduceLROnPlateau but never steps it)
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=hp.scheduler_factor, patience=hp.scheduler_patience)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"}}
