"""Slim training checkpoints: ``last.ckpt``/``best.ckpt`` without the frozen tensors that come from a weight source.

A LightningModule with :class:`SlimCheckpoints` (its model in ``self.model``) drops the model's sourced frozen
tensors (:mod:`vlsm.models.frozen`) from every checkpoint it saves and stores the
:class:`~vlsm.models.frozen.FrozenSource` record under :data:`FROZEN_KEY` instead; trainable parameters,
buffers and the optimizer/scheduler state stay. On resume the model has already been built from its
sources (``train()`` builds it before fitting), so :meth:`SlimCheckpoints.on_load_checkpoint` checks their
digest against the record and puts the live frozen tensors back into the checkpoint's state dict before
Lightning loads it strictly. A model without sourced frozen tensors is saved whole, as before.
"""
from __future__ import annotations

from typing import Optional

from vlsm.models.frozen import FrozenSource, fill_frozen, frozen_keys, frozen_source, slim_state_dict
from vlsm.runs import FROZEN_CHECKPOINT_KEY as FROZEN_KEY  # the checkpoint entry with the frozen-source record
from vlsm.runs.checkpoints import MODEL_PREFIX  # SegmentationTask's model attribute: its keys' prefix


class SlimCheckpoints:
    """LightningModule mixin (put it before ``L.LightningModule``); the model is ``self.model``."""

    _frozen_record: Optional[FrozenSource] = None
    _frozen_keys: Optional[list] = None

    def frozen_record(self) -> Optional[FrozenSource]:
        """The model's frozen-source record, computed once (frozen tensors do not change while training)."""
        if self._frozen_keys is None:
            self._frozen_record = frozen_source(self.model)
            self._frozen_keys = frozen_keys(self.model) if self._frozen_record is not None else []
        return self._frozen_record

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        record = self.frozen_record()
        if record is not None:
            checkpoint["state_dict"] = slim_state_dict(checkpoint["state_dict"], self._frozen_keys, MODEL_PREFIX)
            checkpoint[FROZEN_KEY] = record.to_dict()
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        record = checkpoint.get(FROZEN_KEY)
        trainer = getattr(self, "_trainer", None)  # (None when the module is not attached to a Trainer)
        complete_checkpoint(self.model, checkpoint, source=str(getattr(trainer, "ckpt_path", None) or "the checkpoint"))
        if record is not None:  # the live frozen tensors matched its digest: later saves reuse the record
            self._frozen_record = FrozenSource.from_dict(record)
            self._frozen_keys = frozen_keys(self.model)
        super().on_load_checkpoint(checkpoint)


def complete_checkpoint(model, checkpoint: dict, *, source: str) -> dict:
    """A slim checkpoint's state dict filled with ``model``'s frozen tensors (after checking their digest
    against the checkpoint's record), in place; a full checkpoint is left as it is. Returns the state dict."""
    if checkpoint.get(FROZEN_KEY) is not None:
        record = FrozenSource.from_dict(checkpoint[FROZEN_KEY], where=source)
        checkpoint["state_dict"] = fill_frozen(model, record, checkpoint["state_dict"], source=source,
                                               prefix=MODEL_PREFIX)
        checkpoint.pop(FROZEN_KEY)
    return checkpoint["state_dict"]


__all__ = ["FROZEN_KEY", "MODEL_PREFIX", "SlimCheckpoints", "complete_checkpoint"]
