"""The two experiment grids (experiments/paper, experiments/fixed): complete, loadable, buildable, carrying
the recipes make_grid.py's docstring states, and exactly what make_grid.py writes."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import vlsm
from vlsm.config import load_config
from vlsm.models import ModelSpec

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
MODELS = {"unet-d", "clipseg", "biomedclipseg", "cris", "biomedclipseg-a", "clipseg-b", "ensemble-c"}
ENSEMBLES = {"biomedclipseg-a", "clipseg-b", "ensemble-c"}
DATASETS = {"kvasir_polyp", "clinicdb_polyp", "bkai_polyp", "busi", "chexlocalize"}


def _make_grid():
    spec = importlib.util.spec_from_file_location("make_grid", EXPERIMENTS / "make_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLSM_DATA_ROOT", "/data")
        mp.setenv("VLSM_WEIGHTS", "/weights")
        return {grid: {f.stem: load_config(f) for f in sorted((EXPERIMENTS / grid).glob("*.yaml"))}
                for grid in ("paper", "fixed")}


def test_both_grids_hold_all_35_runs_and_nothing_is_left_at_the_top(grids):
    assert not list(EXPERIMENTS.glob("*.yaml"))
    for configs in grids.values():
        assert len(configs) == 35
        assert {(c.model.name, Path(c.data.paths[0]).name) for c in configs.values()} == \
            {(m, d) for m in MODELS for d in DATASETS}
        for stem, cfg in configs.items():
            assert cfg.name == stem and cfg.data.paths[0].startswith("/data/")
            assert cfg.data.augment is False and cfg.data.prompt == "p6" and cfg.model.preset == "paper"


def test_the_paper_grid_reproduces_the_paper(grids):
    for cfg in grids["paper"].values():
        m, t = cfg.model, cfg.train
        assert m.variant == ("reference" if m.name in ENSEMBLES else None)
        assert cfg.eval.threshold == (0.35 if m.name == "cris" else 0.5)
        if m.name == "cris":
            assert m.overrides["padding_mask"] == "zero_ids"
        if m.name == "unet-d":  # modeling_UNet_D/train.py with its defaults
            assert (t.lr, t.weight_decay, t.batch_size, t.scheduler, t.grad_clip, t.precision) == \
                (1e-5, 1e-3, 10, "none", 1.0, "32-true")
            assert (t.bce_weight, t.dice_weight, t.dice_reduction) == (1.0, 1.0, "batch")
            assert (t.monitor, t.early_stopping_patience, t.min_delta, t.reload_best_each_epoch) == \
                ("val_bce", 20, 0.0, True)
            assert m.overrides == {"image_size": 352, "interpolation": "bicubic", "image_mean": [0, 0, 0],
                                   "image_std": [1, 1, 1]}
            continue
        assert (t.monitor, t.early_stopping_patience, t.min_delta, t.min_epochs) == ("val_dice", 20, 1e-4, 10)
        assert (t.batch_size, t.weight_decay, t.grad_clip, t.precision) == (16, 1e-3, 0.5, "16-mixed")
        assert (t.scheduler, t.scheduler_factor, t.scheduler_patience) == ("plateau", 0.1, 5)
        assert (t.bce_weight, t.dice_weight, t.dice_reduction) == (0.2, 1.0, "image")
        assert t.lr == (2e-5 if m.name == "cris" else 2e-4) and not t.reload_best_each_epoch


def test_the_fixed_grid_removes_the_defects(grids):
    for stem, cfg in grids["fixed"].items():
        m, t = cfg.model, cfg.train
        paper = grids["paper"][stem]
        assert m.variant == ("fixed" if m.name in ENSEMBLES else None)
        assert "padding_mask" not in m.overrides and "interpolation" not in m.overrides
        # medvlsm's recipe for every model, UNet-D included
        assert (t.monitor, t.min_delta, t.min_epochs, t.batch_size, t.grad_clip, t.precision) == \
            ("val_dice", 1e-4, 10, 16, 0.5, "auto")
        assert (t.scheduler, t.bce_weight, t.dice_reduction, t.reload_best_each_epoch) == \
            ("plateau", 0.2, "image", False)
        if m.name != "unet-d":
            assert t.lr == paper.train.lr and cfg.eval.threshold == paper.eval.threshold
        # every VLSM's frozen encoders run in eval mode (deterministic, so the text and feature caches serve
        # every epoch); the paper grid keeps the reference's active dropout (the option's default)
        vlsms = [m.overrides] if m.name in ("clipseg", "biomedclipseg") else \
            [m.overrides[k] for k in ("clipseg", "biomedclipseg") if k in m.overrides]
        assert all(v["frozen_dropout"] is False for v in vlsms) and (m.name in ("cris", "unet-d")) == (not vlsms)
        assert "frozen_dropout" not in str(paper.model.overrides)


def test_make_grid_writes_exactly_these_files():
    make_grid = _make_grid()
    for grid in make_grid.GRIDS:
        files = make_grid.grid_files(grid)
        assert sorted(files) == sorted(p.name for p in (EXPERIMENTS / grid).glob("*.yaml"))
        for name, text in files.items():
            assert (EXPERIMENTS / grid / name).read_text() == text, f"{grid}/{name}: run experiments/make_grid.py"
    assert make_grid.main(["--check"]) == 0


def test_every_distinct_model_of_the_grids_builds(grids):
    """Each (model, variant, options) of both grids is accepted by create_model (tiny preset, no weights,
    the paper's image size left out): a misspelt option or value fails here, not after a download."""
    seen = {}
    for configs in grids.values():
        for cfg in configs.values():
            spec = cfg.model.without_weights()
            options = {k: v for k, v in spec.overrides.items() if k != "image_size"}
            seen[repr((spec.name, spec.variant, sorted(options.items())))] = (spec, options)
    assert len(seen) == 14  # 7 models x 2 grids (the fixed grid's VLSMs run frozen encoders in eval mode)
    for spec, options in seen.values():
        with torch.device("meta"):  # built, never computed with
            model = vlsm.create_model(spec.name, preset="tiny", variant=spec.variant, **options)
        assert isinstance(model.spec, ModelSpec) and model.spec.variant == spec.variant
