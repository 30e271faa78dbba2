"""Write the experiment grids as YAML files:

    experiments/paper/<model>-<dataset>.yaml   reproduces the paper's numbers (7 models x 5 datasets = 35 runs)
    experiments/fixed/<model>-<dataset>.yaml   the same study with the reference code's defects removed (35 runs)
    experiments/cross/<model>-<training>.yaml  medvlsm's cross-dataset polyp experiments (7 models x 2 = 14 runs)

and, on request, seed, fold and training-fraction grids of any of them (files with a ``sweep:`` section, which
``vlsm sweep`` expands into one run per seed, fold and fraction):

Run:  python experiments/make_grid.py            (rewrites paper/, fixed/ and cross/)
      python experiments/make_grid.py --check    (exit 1 if a file differs from what this script writes)
      python experiments/make_grid.py --grid fixed --seeds 0 1 2 --out experiments/fixed-seeds
      python experiments/make_grid.py --grid fixed --folds 5 --models unet-d clipseg-b --out experiments/cv
      python experiments/make_grid.py --grid fixed --fractions 0.1 0.25 0.5 1 --seeds 0 1 2 \
          --datasets kvasir_polyp --out experiments/efficiency
Train a grid:  vlsm sweep experiments/paper/*.yaml   (dataset folders under $VLSM_DATA_ROOT, CRIS weights
under $VLSM_WEIGHTS/cris); count its runs and estimate their GPU-hours first with
vlsm sweep experiments/efficiency/*.yaml --dry-run --bench bench.json

No post-processing in these grids (eval.postprocess: false)
-----------------------------------------------------------
vlsm chooses a post-processing on the validation split after training by default (keep the largest component,
or drop small ones, when that raises validation Dice). Neither the paper nor medvlsm post-processes its masks:
their Dice is that of the thresholded sigmoid. The paper grid reproduces their protocol and the fixed and cross
grids are compared with it, so every grid turns the choice off; without it their test numbers would mix the
models' differences with a post-processing the paper never applied.

Where each value comes from
---------------------------
medvlsm's recipe (naamiinepal/medvlsm, which the VLSM-Ensemble paper reuses for every VLSM and ensemble):
  configs/model/{clipseg,biomed_clipseg,cris}.yaml   AdamW lr 2e-4 (CRIS 2e-5), weight decay 1e-3;
      ReduceLROnPlateau factor 0.1, patience 5 (on the validation loss); loss DiceCELoss with
      lambda_dice 1.0, lambda_ce 0.2 -> dice_weight 1.0, bce_weight 0.2; cris.yaml's threshold 0.35
      (medvlsm's validation and test Dice threshold the sigmoid at the model's threshold, so CRIS's
      numbers are at 0.35: eval.threshold 0.35, which vlsm's validation Dice uses too)
  configs/callbacks/default.yaml   best checkpoint and early stopping on the validation Dice (mode max),
      early stopping patience 20, min_delta 1e-4
  configs/experiment/*.yaml   trainer min_epochs 10, max_epochs 1000, gradient_clip_val 0.5, precision
      16-mixed, seed 42; no augmentation (the transforms are Resize, ToTensor, Normalize only)
  configs/datamodule/img_txt_mask/*.yaml   batch size 16, 4 workers
  Prompt p6 (class + shape, colour, size, number, location): the richest prompt every dataset has.
  Not reproduced: medvlsm feeds sigmoid outputs to MONAI's DiceCELoss, whose single-channel CE term
  is zero or double-sigmoid depending on MONAI's version; vlsm's loss is BCE-with-logits + soft Dice
  on one logit channel (see README, "What this avoids from the original code").

The paper's UNet-D script (juliadietlmeier/VLSM-Ensemble, modeling_UNet_D/train.py run with its
defaults), used for UNet-D alone in the paper grid:
  train_model()/get_args() defaults   AdamW lr 1e-5, weight_decay 1e-3; batch size 10; up to 1000
      epochs; gradient clipping (clip_grad_norm_) 1.0; amp False -> fp32 (32-true)
  ReduceLROnPlateau(optimizer, 'max', patience=5) is created but never stepped -> scheduler none
  loss = BCEWithLogitsLoss + dice_loss(sigmoid, multiclass=False), 1:1; dice_loss reduces over the whole
      batch (utils/dice_score.py, reduce_batch_first=True, epsilon 1e-6) -> dice_reduction batch
  validation loss = BCEWithLogitsLoss alone -> monitor val_bce; early_stopping.py with patience 20,
      delta 0, saving the weights of the lowest validation loss -> best checkpoint on val_bce
  after every epoch (when it does not stop) model.load_state_dict(checkpoint.pt): the best weights so
      far, the optimizer going on -> reload_best_each_epoch true
  utils/data_loading.py   images resized to 352 x 352 with PIL's BICUBIC, scaled to [0, 1] (/ 255), no
      mean/std -> interpolation bicubic, image_mean [0, 0, 0], image_std [1, 1, 1]; masks resized NEAREST
      (vlsm always resizes masks nearest); no augmentation
  predict.py   mask threshold 0.5
  Not reproduced: its validation loader drops the last incomplete batch of 10 (vlsm validates on every
  image); it keeps mask pixels equal to 255 only (vlsm binarises masks by one rule for every model).

Disk (all grids): train.keep_checkpoints none: once a run has finished (summary.json written) its
checkpoints are removed and model/ keeps the best weights, slim where the frozen weights come from a
pretrained source; the 70 finished run folders take 8.8 GB at paper size (benchmarks/grid_disk.py).

medvlsm's cross-dataset polyp experiments (configs/datamodule/img_txt_mask/pooled_polyp.yaml): train on the train
splits of Kvasir-SEG, CVC-ClinicDB and BKAI-IGH pooled, validate on their val splits, test on their test splits and
on three datasets never trained on, CVC-ColonDB, ETIS-LaribPolypDB and CVC-300. cross/ writes them with the fixed
recipe (the study without the reference's defects) for two training sets, Kvasir + ClinicDB and Kvasir + ClinicDB
+ BKAI: data.paths the training datasets (each one's test split evaluated too), data.test_paths the unseen ones
($VLSM_DATA_ROOT/colondb_polyp, etis_polyp, cvc300_polyp; `vlsm data convert colondb|etis|cvc300`). Not
reproduced: medvlsm scored ColonDB and ETIS on their train.json (20 images each) as well as their test.json; vlsm
scores each unseen dataset's test split (medvlsm's split files: 360 of ColonDB's 380 images, 176 of ETIS's 196;
the cvc300 converter puts all 60 CVC-300 images in test).

Models (all grids): CLIPSeg's encoders run under no_grad in transformers, so medvlsm's "fine-tuned"
CLIPSeg trained only its decoder: freeze_encoder true, here and in the ensembles' CLIPSeg branches.

paper/   ensembles in variant `reference` (the reference code's architecture, batch-dependent adapter
         included), CRIS with padding_mask zero_ids (medvlsm's CRIS masks only id 0 and its tokenizer
         pads with 49407, so the paper's CRIS attended to all 77 tokens), fp16 mixed precision as medvlsm,
         UNet-D alone with its script's recipe (above).
fixed/   ensembles in variant `fixed` (the architecture the paper describes), CRIS masking padded words
         (padding_mask attention_mask, the default), frozen encoders in eval mode (frozen_dropout false:
         medvlsm's frozen BiomedCLIP text encoder ran its dropout in training, because Lightning's train()
         reaches every submodule, so a frozen encoder gave random text features; in eval mode they are
         deterministic, and the text and feature caches serve every epoch), precision auto (bf16 where
         the GPU has it), and
         medvlsm's recipe for every model including UNet-D alone (lr 1e-3: medvlsm's rate for its CNN
         baselines, configs/model/unet.yaml; ImageNet mean/std and bilinear resize as its CNN experiments).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).parent
GRIDS = ("paper", "fixed")
DATASETS = ["kvasir_polyp", "clinicdb_polyp", "bkai_polyp", "busi", "chexlocalize"]
# medvlsm's cross-dataset polyp experiments: the training datasets (pooled) -> the datasets never trained on
CROSS_TRAINING = {"kvasir_clinicdb": ["kvasir_polyp", "clinicdb_polyp"],
                  "kvasir_clinicdb_bkai": ["kvasir_polyp", "clinicdb_polyp", "bkai_polyp"]}
CROSS_UNSEEN = ["colondb_polyp", "etis_polyp", "cvc300_polyp"]
CLIPSEG = "CIDAS/clipseg-rd64-refined"
BIOMEDCLIP = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
ENSEMBLES = ("biomedclipseg-a", "clipseg-b", "ensemble-c")
MODELS = {
    # name: (pretrained weights, model overrides, lr). Ensembles name their VLSM's weights in overrides.
    "unet-d": (None, {}, 1e-3),
    "clipseg": (CLIPSEG, {"freeze_encoder": True}, 2e-4),
    "biomedclipseg": (BIOMEDCLIP, {}, 2e-4),
    "cris": ("$VLSM_WEIGHTS/cris", {}, 2e-5),
    "biomedclipseg-a": (None, {"biomedclipseg": {"pretrained": BIOMEDCLIP}}, 2e-4),
    "clipseg-b": (None, {"clipseg": {"pretrained": CLIPSEG, "freeze_encoder": True}}, 2e-4),
    "ensemble-c": (None, {"biomedclipseg": {"pretrained": BIOMEDCLIP},
                          "clipseg": {"pretrained": CLIPSEG, "freeze_encoder": True}}, 2e-4),
}
# A finished run keeps model/ (its best weights) and no training checkpoint: both grids' 70 run folders then take
# 8.8 GB at paper size (benchmarks/grid_disk.py), 35 GB when last.ckpt is kept (CRIS's, with AdamW state for all
# its 147 M parameters, is 1.76 GB). Unfinished runs keep last.ckpt, so a grid still resumes after a crash.
GRID_KEEP_CHECKPOINTS = "none"
# medvlsm's per-model threshold (configs/model/cris.yaml; the others keep BaseModule's 0.5)
THRESHOLDS = {"cris": 0.35}


def medvlsm_train(lr: float, precision: str) -> dict:
    return {"epochs": 1000, "min_epochs": 10, "batch_size": 16, "lr": lr, "weight_decay": 1e-3,
            "bce_weight": 0.2, "dice_weight": 1.0, "scheduler": "plateau", "scheduler_patience": 5,
            "scheduler_factor": 0.1, "monitor": "val_dice", "early_stopping_patience": 20, "min_delta": 1e-4,
            "grad_clip": 0.5, "precision": precision, "seed": 42, "num_workers": 4}


# modeling_UNet_D/train.py run with its defaults (see the docstring)
UNET_D_SCRIPT_TRAIN = {"epochs": 1000, "batch_size": 10, "lr": 1e-5, "weight_decay": 1e-3, "bce_weight": 1.0,
                       "dice_weight": 1.0, "dice_reduction": "batch", "scheduler": "none", "monitor": "val_bce",
                       "early_stopping_patience": 20, "min_delta": 0.0, "reload_best_each_epoch": True,
                       "grad_clip": 1.0, "precision": "32-true", "seed": 42, "num_workers": 4}
UNET_D_SCRIPT_INPUT = {"image_size": 352, "interpolation": "bicubic", "image_mean": [0, 0, 0],
                       "image_std": [1, 1, 1]}


def _frozen_encoders_in_eval_mode(model: str, overrides: dict) -> dict:
    """``frozen_dropout: false`` for every VLSM of ``model``, nested ones (an ensemble's) included."""
    if model in ("clipseg", "biomedclipseg"):
        return {**overrides, "frozen_dropout": False}
    return {key: {**value, "frozen_dropout": False} if key in ("clipseg", "biomedclipseg") else value
            for key, value in overrides.items()}


def experiment(grid: str, model: str, dataset: str) -> dict:
    """One run of ``grid`` ("paper" or "fixed") as the dict its YAML file holds."""
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    pretrained, overrides, lr = MODELS[model]
    overrides = dict(overrides)
    variant = ("reference" if grid == "paper" else "fixed") if model in ENSEMBLES else None
    if grid == "paper" and model == "cris":
        overrides["padding_mask"] = "zero_ids"
    if grid == "fixed":  # frozen encoders run in eval mode (see the docstring)
        overrides = _frozen_encoders_in_eval_mode(model, overrides)
    if grid == "paper" and model == "unet-d":
        overrides.update(UNET_D_SCRIPT_INPUT)
        train = dict(UNET_D_SCRIPT_TRAIN)
    else:
        train = medvlsm_train(lr, "16-mixed" if grid == "paper" else "auto")
    train["keep_checkpoints"] = GRID_KEEP_CHECKPOINTS
    return {
        "name": f"{model}-{dataset}",
        "model": {"name": model, "preset": "paper", "variant": variant, "pretrained": pretrained,
                  "overrides": overrides},
        "data": {"paths": [f"$VLSM_DATA_ROOT/{dataset}"], "prompt": "p6", "augment": False},
        "train": train,
        # no post-processing: the paper's and medvlsm's protocol (see the docstring)
        "eval": {"threshold": THRESHOLDS.get(model, 0.5), "splits": ["test"], "postprocess": False},
    }


def cross_experiment(model: str, training: str) -> dict:
    """One of medvlsm's cross-dataset polyp experiments with the fixed recipe: ``training`` (a key of
    CROSS_TRAINING) pooled, tested on CROSS_UNSEEN too."""
    exp = experiment("fixed", model, CROSS_TRAINING[training][0])
    exp["name"] = f"{model}-{training}"
    exp["data"] = {"paths": [f"$VLSM_DATA_ROOT/{d}" for d in CROSS_TRAINING[training]],
                   "test_paths": [f"$VLSM_DATA_ROOT/{d}" for d in CROSS_UNSEEN], "prompt": "p6", "augment": False}
    return exp


def _header(what: str, grid: str) -> str:
    return (f"# {what}, {grid} grid (generated by experiments/make_grid.py; its docstring gives the recipe and "
            f"the source of every value)\n")


def grid_files(grid: str, models=None, datasets=None, sweep=None) -> dict[str, str]:
    """``{file name: YAML text}`` of every run of ``grid`` ("paper", "fixed" or "cross"), as this script writes
    them; ``models``/``datasets`` (training sets for "cross") choose some; ``sweep`` (``{"seeds": [...], "folds": K,
    "fractions": [...]}``) adds the section vlsm sweep expands into one run per seed, fold and fraction."""
    files = {}
    for model in models or MODELS:
        for dataset in datasets or (CROSS_TRAINING if grid == "cross" else DATASETS):
            if grid == "cross":
                exp, what = cross_experiment(model, dataset), f"{model} trained on {dataset}, tested on unseen polyps"
            else:
                exp, what = experiment(grid, model, dataset), f"{model} on {dataset}"
            if sweep:
                exp["sweep"] = sweep
            files[f"{model}-{dataset}.yaml"] = _header(what, grid) + yaml.safe_dump(exp, sort_keys=False)
    return files


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Write the experiment grids (see the docstring).")
    p.add_argument("--check", action="store_true", help="exit 1 if a file of paper/, fixed/ or cross/ differs")
    p.add_argument("--grid", choices=(*GRIDS, "cross"), help="write one grid (with --out), e.g. with a sweep section")
    p.add_argument("--out", help="the folder --grid writes (default: experiments/<grid>)")
    p.add_argument("--models", nargs="+", choices=list(MODELS), help="only these models")
    p.add_argument("--datasets", nargs="+", help="only these datasets (cross: training sets)")
    p.add_argument("--seeds", nargs="+", type=int, help="one run per seed (sweep.seeds)")
    p.add_argument("--folds", type=int, help="one run per fold of a K-fold cross-validation (sweep.folds)")
    p.add_argument("--fractions", nargs="+", type=float, help="one run per training fraction (sweep.fractions)")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    sweep = {k: v for k, v in (("seeds", args.seeds), ("folds", args.folds), ("fractions", args.fractions)) if v}
    if args.grid is None and (sweep or args.models or args.datasets or args.out):
        print("--seeds, --folds, --fractions, --models, --datasets and --out make one grid: add --grid", file=sys.stderr)
        return 2
    if args.grid is not None:
        choices = CROSS_TRAINING if args.grid == "cross" else DATASETS
        unknown = [d for d in args.datasets or () if d not in choices]
        if unknown:
            print(f"--datasets {unknown[0]}: choose from {', '.join(choices)}", file=sys.stderr)
            return 2
        folder = Path(args.out) if args.out else HERE / args.grid
        jobs = {folder: grid_files(args.grid, args.models, args.datasets, sweep or None)}
    else:
        jobs = {HERE / grid: grid_files(grid) for grid in (*GRIDS, "cross")}
    stale = []
    for folder, files in jobs.items():
        for name, text in files.items():
            path = folder / name
            if args.check:
                if not path.is_file() or path.read_text() != text:
                    stale.append(str(path))
                continue
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"{len(stale)} file(s) differ from make_grid.py's output: {', '.join(stale)}; "
              f"run `python experiments/make_grid.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
