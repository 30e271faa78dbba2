"""Planning an evaluation (``vlsm evaluate``, :func:`vlsm.api.evaluate`): which dataset splits, prompts and
output folders, every image and output checked before the first one is scored."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from vlsm.data.prompts import PROMPT_KEYS
from vlsm.errors import UserError
from vlsm.evaluation.evaluate import EvalTarget
from vlsm.evaluation.metrics import NSD_TOLERANCE
from vlsm.runs import RunFolder, eval_name, require_writable

PathLike = Union[str, Path]


def plan_targets(predictor, *, data: Optional[Sequence[PathLike]] = None, split: str = "test",
                 prompts: Optional[Sequence[str]] = None, threshold: float = 0.5, out: Optional[PathLike] = None,
                 run: Optional[RunFolder] = None, overwrite: bool = False, extra: Optional[dict] = None,
                 max_pixels: Optional[int] = None, boundary: bool = False,
                 nsd_tolerance: float = NSD_TOLERANCE) -> list[EvalTarget]:
    """The :class:`EvalTarget` s of one evaluation of ``predictor`` (a :class:`vlsm.Predictor`).

    ``data``: dataset folders (default: the run's). ``prompts``: prompt keys or texts, ``["all"]`` for p0..p9
    (default: the run's evaluation prompt, else p1). Results go to ``out`` (one folder; a subfolder per
    dataset/prompt when there are several) or else to the run folder ``run``'s ``eval/<dataset>-<split>
    [-<prompt>]``. ``boundary``: HD95 and NSD (at ``nsd_tolerance``) too. Refuses (one line each) a missing dataset or output, an image-only model asked for a
    prompt sweep, an output that cannot be written or holds an evaluation (unless ``overwrite``), and
    unreadable images, image/mask size mismatches and images over ``max_pixels`` (the data check's rules)."""
    from vlsm.data import load_records
    from vlsm.data.images import check_pixel_limit

    cfg = predictor.config
    data = list(data or (cfg.data.paths if cfg else []))
    if not data:
        raise UserError("no dataset: give --data PATH")
    chosen = _prompts(predictor, prompts)
    if out is None and run is None:
        raise UserError("give -o OUT_DIR for the results")
    require_writable(Path(out) if out is not None else run.path, flag="-o")
    splits = [load_records([path], split, check=True)[0] for path in data]
    check_pixel_limit([r.image_path for _, records in splits for r in records], max_pixels)
    targets = []
    for name, records in splits:
        for prompt in chosen:
            tagged = prompt if len(chosen) > 1 or prompts else None
            if out is None:
                folder = run.eval_dir(name, split, tagged)
            else:
                several = len(chosen) > 1 or len(data) > 1
                folder = Path(out) / eval_name(name, split, tagged) if several else Path(out)
            done = RunFolder(folder).summary_file
            if done.exists() and not overwrite:
                raise UserError(f"{done} exists; pass --overwrite or another -o")
            targets.append(EvalTarget(name, split, records, prompt, threshold, folder, extra, boundary, nsd_tolerance))
    return targets


def _prompts(predictor, prompts: Optional[Sequence[str]]) -> list[str]:
    """The prompts to evaluate: as given (``all``: p0..p9) or the run's evaluation prompt."""
    cfg = predictor.config
    chosen = list(prompts) if prompts else [cfg.data.resolved_eval_prompt() if cfg else "p1"]
    if chosen == ["all"]:
        chosen = list(PROMPT_KEYS)  # the medvlsm prompt types p0..p9
    if not predictor.model.uses_text and len(chosen) > 1:
        raise UserError(f"{predictor.model.spec.name} is image-only: a prompt sweep would give {len(chosen)} "
                        f"equal rows")
    return chosen


__all__ = ["plan_targets"]
