"""The disk footprint of the paper's grid: every run folder of experiments/paper/ and experiments/fixed/.

For each distinct model section of the grid files (model, variant, weight sources, options) the real code
writes, at paper size, into a temporary folder:

* ``last.ckpt``: the training task's state dict through :class:`~vlsm.training.slim_checkpoints.SlimCheckpoints`
  (the frozen tensors that come from a weight source left out, the frozen-source record added), AdamW's
  state after a step and the scheduler's, written by training's atomic checkpoint writer;
* ``best.ckpt``: the same, weights only (as ``ModelCheckpoint(save_weights_only=True)`` writes it);
* ``model/``: ``save_pretrained`` (slim when frozen tensors come from a source), and ``tokenizer/``.

The models are random-init (nothing is downloaded): the grid's weight sources are written into their specs
afterwards, so the code sees what a run built from them sees (which frozen tensors are sourced); the bytes
are those of the real files. Lightning's own small entries (loop and callback states) and a run's logs,
metrics and per-image CSVs (well under 1 MB a run) are left out. "before" is what the code wrote before
slim checkpoints (every tensor in last.ckpt, last.prev.ckpt and best.ckpt with the optimizer state, and in
model/), computed with torch.save into a byte counter.

A finished run folder keeps model/ + tokenizer/ and the checkpoints of ``train.keep_checkpoints``
(last: last.ckpt; all: last.ckpt and best.ckpt; none: neither). Totals are given for every policy.

    .venv/bin/python benchmarks/grid_disk.py              # both grids (several minutes, ~4 GB of temporary files)
    .venv/bin/python benchmarks/grid_disk.py --json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
import yaml

from vlsm.models import ModelSpec, create_model
from vlsm.models.frozen import frozen_keys
from vlsm.training.checkpoint_io import save_atomically
from vlsm.training.module import SegmentationTask

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
GRIDS = ("paper", "fixed")
POLICIES = ("last", "all", "none")
TARGET_GB = 10.0
MB, GB = 1e6, 1e9


class ByteCounter:
    """A write-only file that counts what torch.save writes into it."""

    def __init__(self):
        self.n = 0

    def write(self, data) -> int:
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def saved_bytes(obj) -> int:
    sink = ByteCounter()
    torch.save(obj, sink)
    return sink.n


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def grid_files() -> list[tuple[str, Path, dict]]:
    """(grid, file, parsed YAML) for every experiment file of both grids."""
    found = []
    for grid in GRIDS:
        for path in sorted((EXPERIMENTS / grid).glob("*.yaml")):
            found.append((grid, path, yaml.safe_load(path.read_text())))
    if not found:
        raise SystemExit(f"no experiment files under {EXPERIMENTS}/{{{','.join(GRIDS)}}}")
    return found


def build_as_sourced(section: dict):
    """The paper-size model of a grid file's model section, random-init, with the file's weight sources in its
    specs (top level and each ensemble's VLSM), as if it had been built from them."""
    spec = ModelSpec.from_dict(section)
    bare = spec.without_weights()
    model = create_model(bare.name, None, preset=bare.preset, variant=bare.variant, **bare.overrides)
    model.spec = spec
    vlsms = model.vlsms() if hasattr(model, "vlsms") else {}
    for vname, vlsm in vlsms.items():
        source = (spec.overrides.get(vname) or {}).get("pretrained")
        if source:
            vlsm.spec = dataclasses.replace(vlsm.spec, pretrained=source)
    return model


def lightning_checkpoint(task: SegmentationTask, optimizer, scheduler, *, weights_only: bool) -> dict:
    ckpt = {"epoch": 0, "global_step": 1, "state_dict": task.state_dict(), "hparams_name": "kwargs",
            "hyper_parameters": dict(task.hparams)}
    if not weights_only:
        ckpt["optimizer_states"] = [optimizer.state_dict()]
        ckpt["lr_schedulers"] = [scheduler.state_dict()]
    return ckpt


def measure(section: dict, train: dict, tmp: Path) -> dict:
    """Bytes of last.ckpt, best.ckpt, model/ and tokenizer/ as training writes them now, and before."""
    torch.manual_seed(0)
    model = build_as_sourced(section)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    sourced = len(frozen_keys(model))
    task = SegmentationTask(model, lr=float(train.get("lr", 1e-4)), weight_decay=float(train.get("weight_decay", 0)))
    opt_cfg = task.configure_optimizers()
    optimizer = opt_cfg["optimizer"] if isinstance(opt_cfg, dict) else opt_cfg
    scheduler = (opt_cfg.get("lr_scheduler") or {}).get("scheduler") if isinstance(opt_cfg, dict) else None
    for p in model.parameters():  # one AdamW step: its moments exist for every trainable tensor, as after epoch 1
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sched_state = scheduler if scheduler is not None else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)

    out = {}
    t0 = time.time()
    for name, weights_only in (("last", False), ("best", True)):
        ckpt = lightning_checkpoint(task, optimizer, sched_state, weights_only=weights_only)
        if name == "last":  # before: every tensor, and best.ckpt was the same (optimizer state included)
            out["last_before"] = out["best_before"] = saved_bytes(ckpt)
        task.on_save_checkpoint(ckpt)  # the real mixin: slim when frozen tensors come from a source
        path = tmp / "checkpoints" / f"{name}.ckpt"
        save_atomically(ckpt, path)
        out[name] = path.stat().st_size
        path.unlink()
    model.save_pretrained(tmp / "model")
    out["model_dir"] = folder_bytes(tmp / "model")
    shutil.rmtree(tmp / "model")
    model.save_pretrained(tmp / "model", standalone=True)
    out["model_dir_before"] = folder_bytes(tmp / "model")
    shutil.rmtree(tmp / "model")
    out["tokenizer"] = 0
    try:
        tok = model.get_tokenizer()
        if hasattr(tok, "save"):
            tok.save(tmp / "tokenizer")
            out["tokenizer"] = folder_bytes(tmp / "tokenizer")
            shutil.rmtree(tmp / "tokenizer")
    except Exception:  # noqa: BLE001 - paper BiomedCLIP without its vocabulary has no tokenizer (~0.2 MB)
        pass
    out.update(params_total=total, params_trainable=trainable, sourced_frozen_keys=sourced,
               seconds=round(time.time() - t0, 1))
    return out


def run_folder(sizes: dict, policy: str) -> int:
    kept = {"last": ["last"], "all": ["last", "best"], "none": []}[policy]
    return sizes["model_dir"] + sizes["tokenizer"] + sum(sizes[k] for k in kept)


def run_folder_before(sizes: dict) -> int:
    # before: last.ckpt + last.prev.ckpt + best.ckpt (all with the optimizer state), full model/, tokenizer/
    return 2 * sizes["last_before"] + sizes["best_before"] + sizes["model_dir_before"] + sizes["tokenizer"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the rows and totals as JSON")
    args = ap.parse_args(argv)

    groups: dict = {}
    for grid, _path, exp in grid_files():
        section = exp["model"]
        train = exp.get("train") or {}
        key = json.dumps(section, sort_keys=True)
        entry = groups.setdefault(key, {"section": section, "train": train, "runs": {g: 0 for g in GRIDS},
                                        "policy": set()})
        entry["runs"][grid] += 1
        entry["policy"].add(train.get("keep_checkpoints", "last"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="grid-disk-") as tmp:
        for entry in groups.values():
            section = entry["section"]
            sizes = measure(section, entry["train"], Path(tmp))
            row = {"model": section["name"], "variant": section.get("variant"), "runs": entry["runs"],
                   "grid_policy": sorted(entry["policy"]), **sizes}
            rows.append(row)
            if not args.json:
                print(f"measured {row['model']:<16} {row['variant'] or '':<9} in {sizes['seconds']:.0f} s", flush=True)

    totals = {policy: sum(run_folder(r, policy) * sum(r["runs"].values()) for r in rows) for policy in POLICIES}
    totals["before"] = sum(run_folder_before(r) * sum(r["runs"].values()) for r in rows)
    per_grid = {grid: {policy: sum(run_folder(r, policy) * r["runs"][grid] for r in rows) for policy in POLICIES}
                for grid in GRIDS}
    if args.json:
        print(json.dumps({"rows": rows, "totals_bytes": totals, "per_grid_bytes": per_grid,
                          "target_bytes": TARGET_GB * GB}, indent=2))
        return 0

    head = (f"{'model':<16} {'variant':<9} {'runs p/f':>8} {'params M':>9} {'train M':>8} {'last.ckpt':>10} "
            f"{'best.ckpt':>10} {'model/':>9} {'tok/':>6} {'run(last)':>10} {'run(none)':>10} {'before':>9}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        runs = f"{r['runs']['paper']}/{r['runs']['fixed']}"
        print(f"{r['model']:<16} {r['variant'] or '':<9} {runs:>8} {r['params_total'] / 1e6:9.1f} "
              f"{r['params_trainable'] / 1e6:8.2f} {r['last'] / MB:10.1f} {r['best'] / MB:10.1f} {r['model_dir'] / MB:9.1f} "
              f"{r['tokenizer'] / MB:6.1f} {run_folder(r, 'last') / MB:10.1f} {run_folder(r, 'none') / MB:10.1f} "
              f"{run_folder_before(r) / MB:9.1f}")
    print("sizes in MB (10^6 bytes) per run; runs p/f: files in experiments/paper / experiments/fixed")
    for grid in GRIDS:
        print(f"{grid} grid: " + ", ".join(f"keep_checkpoints={p}: {per_grid[grid][p] / GB:.2f} GB" for p in POLICIES))
    print("both grids: " + ", ".join(f"keep_checkpoints={p}: {totals[p] / GB:.2f} GB" for p in POLICIES)
          + f"; before slim checkpoints: {totals['before'] / GB:.2f} GB; target <= {TARGET_GB:.0f} GB")
    biomed = next((r for r in rows if r["model"] == "biomedclipseg"), None)
    if biomed is not None:
        print(f"BiomedCLIPSeg last.ckpt: {biomed['last'] / MB:.1f} MB (target <= 25 MB; before "
              f"{biomed['last_before'] / MB:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
