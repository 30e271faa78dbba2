"""The training data as a LightningDataModule: each folder read once, the loaders it gives, and the records logged
before the run folder exists reaching its log.txt."""
from __future__ import annotations

import logging

import pytest

import vlsm
from vlsm.config import config_from_dict
from vlsm.data.synthetic import make_synthetic_dataset
from vlsm.training import datamodule as datamodule_module
from vlsm.training.datamodule import SegmentationDataModule
from vlsm.training.logging import EarlyRecords, RunLog


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("dm") / "synthetic_polyp", n_train=7, n_val=3, n_test=2,
                                  image_size=32, seed=4)


def test_each_folder_is_read_once_with_every_split_asked_of_it(data, tmp_path, monkeypatch):
    calls = []
    real = datamodule_module.read_dataset

    def counted(path, splits, **kw):
        calls.append((path, splits))
        return real(path, splits, **kw)

    monkeypatch.setattr(datamodule_module, "read_dataset", counted)
    cfg = config_from_dict({"data": {"paths": [str(data)], "test_paths": [str(data)], "cache": False},
                            "eval": {"splits": ["val"], "batch_size": 2}, "train": {"batch_size": 3, "num_workers": 0}})
    dm = SegmentationDataModule(cfg, vlsm.create_model("unet-d", preset="tiny", image_size=32))
    dm.setup("fit")
    dm.setup("fit")  # (Lightning calls it again: nothing is read twice)
    assert calls == [(str(data), ["train", "val", "test"])]
    assert [(name, split, len(records)) for name, split, records in dm.eval_sets()] == \
        [("synthetic_polyp", "val", 3), ("synthetic_polyp", "test", 2)]
    assert len(dm.train_dataloader()) == dm.train_batches() == 2 and len(dm.val_dataloader()) == 2
    dm.start_epoch = 5  # a resumed run's next epoch: the sampler and the datasets' draws start there
    assert dm.train_dataloader().sampler.epoch == 5 and dm.train_set.datasets[0].epoch == 5


def test_records_logged_before_the_run_folder_exists_reach_its_log(tmp_path):
    log = logging.getLogger("vlsm")
    with RunLog() as run_log:
        log.warning("noted before the folder existed")
        log.info("and an info line")
        run_log.attach(tmp_path / "log.txt")
        log.info("after")
    log.warning("after the run")
    text = (tmp_path / "log.txt").read_text()
    assert text.index("noted before") < text.index("and an info line") < text.index("after")
    assert "after the run" not in text
    assert not [h for h in log.handlers if isinstance(h, (EarlyRecords, logging.FileHandler))]  # all detached
