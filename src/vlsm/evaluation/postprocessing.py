"""The threshold and the post-processing a trained model uses, chosen on its validation split (nnU-Net's way).

After training (:func:`choose_after_training`, called by ``vlsm train``), the model predicts the validation
images once, at their original size, with the run's test-time augmentation. Then:

1. the threshold: with ``train.tune_threshold``, the one of :data:`THRESHOLDS` (and ``eval.threshold``) with the
   highest mean validation Dice; ties go to the threshold nearest ``eval.threshold``. Otherwise ``eval.threshold``.
2. the post-processing (``eval.postprocess``): at that threshold, each rule of :data:`CANDIDATES` (keep the largest
   8-connected component; drop the components under a fraction of the image's pixels) is scored, and the best one
   is kept only when its mean validation Dice is higher than without post-processing (ties: none, then the rule
   listed first).

Every candidate's Dice is computed from one labelling of each mask (per threshold), with the empty-mask rule of
:mod:`vlsm.evaluation.metrics`, and equals what :class:`vlsm.Predictor` gives with that rule applied. The choice
goes into ``RUN/summary.json`` (``train.postprocessing``) and the model card; :class:`vlsm.Predictor` applies it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from vlsm.evaluation.evaluate import ground_truth
from vlsm.evaluation.metrics import dice_from_counts
from vlsm.predictor import Predictor, components, kept_components
from vlsm.runs.results import PostProcessing

log = logging.getLogger("vlsm")

#: the thresholds ``train.tune_threshold`` tries (with ``eval.threshold``)
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
#: the fractions of an image's pixels under which rule ``min_size`` drops a component
MIN_SIZES = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05)
#: the post-processing rules tried, in order of preference when they tie
CANDIDATES = (PostProcessing(), PostProcessing("largest_component"), *(PostProcessing("min_size", f) for f in MIN_SIZES))


@dataclass
class Choice:
    """What validation chose: the threshold, the post-processing, and the mean validation Dice behind them."""

    threshold: float
    threshold_tuned: bool
    postprocessing: PostProcessing
    split: str
    n: int
    dice: dict = field(default_factory=dict)  # rule (describe()) -> mean Dice at ``threshold``
    threshold_dice: dict = field(default_factory=dict)  # threshold -> mean Dice without post-processing (tuned)

    def to_dict(self) -> dict:
        """The record in ``RUN/summary.json`` under ``train.postprocessing``."""
        record = {"rule": self.postprocessing.rule, "min_size": self.postprocessing.min_size,
                  "threshold": self.threshold, "threshold_tuned": self.threshold_tuned, "split": self.split,
                  "n": self.n, "validation_dice": self.dice}
        if self.threshold_dice:
            record["threshold_dice"] = self.threshold_dice
        return record


def rule_dice(mask: np.ndarray, gt: np.ndarray, rules: Sequence[PostProcessing]) -> np.ndarray:
    """The Dice of ``mask`` against ``gt`` after each of ``rules``, from one labelling of ``mask``."""
    labels, sizes = components(mask)
    inside = np.bincount(labels[gt], minlength=len(sizes))
    gt_area = int(gt.sum())
    out = np.empty(len(rules))
    for i, rule in enumerate(rules):
        keep = kept_components(sizes, rule, mask.size)
        out[i] = dice_from_counts(int(inside[keep].sum()), int(sizes[keep].sum()), gt_area)
    return out


def choose(predictor: Predictor, records: Sequence, *, prompt: str, threshold: float, tune_threshold: bool = False,
           postprocess: bool = True, split: str = "val") -> Choice:
    """Choose the threshold and post-processing of ``predictor`` on ``records`` (with masks); see the module."""

    thresholds = sorted({*THRESHOLDS, float(threshold)}) if tune_threshold else [float(threshold)]
    rules = CANDIDATES if postprocess else CANDIDATES[:1]
    totals = np.zeros((len(thresholds), len(rules)))
    for group in predictor.predict_record_groups(records, prompt=prompt, threshold=threshold):
        probabilities = group.probabilities.cpu().numpy()
        for j, index in enumerate(group.indices):
            gt = ground_truth(records[index], probabilities.shape[1:])
            for t, value in enumerate(thresholds):
                totals[t] += rule_dice(probabilities[j] > value, gt, rules)
    means = totals / max(len(records), 1)
    best_t = max(range(len(thresholds)), key=lambda t: (means[t, 0], -abs(thresholds[t] - threshold), -t))
    best_rule = int(np.argmax(means[best_t]))  # (the first of equals: none before any rule)
    chosen = rules[best_rule] if means[best_t, best_rule] > means[best_t, 0] else rules[0]
    return Choice(threshold=thresholds[best_t], threshold_tuned=bool(tune_threshold), postprocessing=chosen,
                  split=split, n=len(records), dice={r.describe(): float(m) for r, m in zip(rules, means[best_t])},
                  threshold_dice={f"{t:g}": float(m) for t, m in zip(thresholds, means[:, 0])} if tune_threshold else {})


def choose_after_training(predictor: Predictor, cfg, records: Sequence) -> Optional[Choice]:
    """The end of ``vlsm train``: choose on the validation ``records`` as ``cfg`` asks (``train.tune_threshold``,
    ``eval.postprocess``), set the choice on ``predictor`` and return it; None when nothing is to be chosen or
    the validation split has no images with masks."""
    if not (cfg.train.tune_threshold or cfg.eval.postprocess):
        return None
    records = [r for r in records if r.mask_path is not None]
    if not records:
        log.warning("no validation images with masks: the threshold and post-processing are not chosen")
        return None
    choice = choose(predictor, records, prompt=cfg.data.resolved_eval_prompt(), threshold=cfg.eval.threshold,
                    tune_threshold=cfg.train.tune_threshold, postprocess=cfg.eval.postprocess,
                    split=cfg.data.val_split)
    predictor.threshold, predictor.postprocessing = choice.threshold, choice.postprocessing
    before = choice.dice[CANDIDATES[0].describe()]
    after = choice.dice[choice.postprocessing.describe()]
    log.info("chosen on %s (%d images): threshold %g%s, post-processing %s (validation Dice %.2f %% -> %.2f %%)",
             choice.split, choice.n, choice.threshold, " (tuned)" if choice.threshold_tuned else "",
             choice.postprocessing.describe(), 100 * before, 100 * after)
    return choice


__all__ = ["CANDIDATES", "Choice", "MIN_SIZES", "THRESHOLDS", "choose", "choose_after_training", "rule_dice"]
