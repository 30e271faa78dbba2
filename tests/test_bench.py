"""`vlsm bench` / `vlsm.bench` on tiny presets: every figure is measured, and the CLI refuses bad flags."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from vlsm.bench import bench, bench_model, checkpoint_bytes, format_table
from vlsm.cli import main


def test_bench_model_measures_every_figure():
    r = bench_model("unet-d", preset="tiny", batch_size=2, steps=1, warmup=0, device="cpu")
    assert r.image_size == 64 and r.batch_size == 2 and r.device == "cpu"
    assert r.train_img_s > 0 and r.infer_img_s > 0
    assert r.memory_kind == "peak RSS" and r.peak_memory_gb > 0
    # model weights in fp32 plus AdamW's two moments: at least 3 x 4 bytes per trainable parameter
    assert r.checkpoint_mb * 2**20 >= 12 * r.params_trainable
    assert r.loader_first_img_s is None and r.epoch_seconds is None


def test_checkpoint_bytes_grows_with_optimizer_state():
    model = torch.nn.Linear(100, 100)
    opt = torch.optim.AdamW(model.parameters())
    before = checkpoint_bytes(model, opt)
    model(torch.randn(2, 100)).sum().backward()
    opt.step()  # AdamW now holds exp_avg and exp_avg_sq
    assert checkpoint_bytes(model, opt) > before + 2 * 4 * 10_100 - 1


def test_checkpoint_bytes_are_slim_without_frozen_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(100, 100), torch.nn.Linear(100, 1))
    model[0].requires_grad_(False)  # a frozen part, as if from a pretrained source: not in the checkpoint
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    slim, full = checkpoint_bytes(model, opt), checkpoint_bytes(model, opt, slim=False)
    assert full - slim >= 4 * 10_100 and slim < 4 * 10_100


def test_peak_rss_sees_a_large_allocation():
    # In a fresh process: a long test session's allocator reuses pages that are already resident,
    # so a new block there need not raise the RSS at all.
    code = textwrap.dedent("""
        import time
        import numpy as np
        from vlsm.bench import PeakRSS
        with PeakRSS(interval=0.001) as rss:
            start = rss.peak
            block = np.ones(128 * 2**20 // 8)  # 128 MiB, touched
            time.sleep(0.2)  # the sampler gets the GIL while the block is alive
            del block
        print(rss.peak - start)
    """)
    grown = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert grown >= 64 * 2**20


def test_variants_apply_only_to_models_that_have_them(tmp_path):
    results = bench(["unet-d", "clipseg-b"], variants=["fixed", "reference"], preset="tiny", batch_size=1,
                    steps=1, warmup=0, device="cpu")
    assert [(r.model, r.variant) for r in results] == [("unet-d", None), ("clipseg-b", "fixed"),
                                                        ("clipseg-b", "reference")]
    assert results[1].text_tokens > 0
    table = format_table(results)
    assert "clipseg-b" in table and "reference" in table and "peak RSS" in table


def test_loader_throughput_and_epoch_estimate(tmp_path):
    from vlsm.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "synth", n_train=12, n_val=2, n_test=2, image_size=48, seed=0)
    r = bench_model("unet-d", preset="tiny", batch_size=4, steps=1, warmup=0, device="cpu", data=str(data),
                    num_workers=0)
    assert r.train_images and r.loader_first_img_s > 0 and r.loader_later_img_s > 0
    assert r.epoch_seconds == pytest.approx(r.train_images / min(r.train_img_s, r.loader_later_img_s))


def test_cli_json_and_errors(capsys):
    assert main(["bench", "unet-d", "--preset", "tiny", "--steps", "1", "--warmup", "0", "--device", "cpu",
                 "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["model"] == "unet-d" and row["precision"] == "32-true"
    assert main(["bench", "unet-d", "--preset", "tiny", "--precision", "fp8"]) == 2
    assert "--precision 'fp8'" in capsys.readouterr().err
    assert main(["bench", "no-such-model"]) == 2
    assert "valid names" in capsys.readouterr().err
