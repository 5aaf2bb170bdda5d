"""benchmarks.torch_recipe: the PyTorch reference loop that whole minise runs are timed against."""
import csv

import numpy as np
import pytest
import torch

from benchmarks.torch_recipe import crop_flip, main


def test_crop_flip_cuts_one_window_per_batch_and_mirrors_some_images():
    x = torch.arange(6 * 2 * 5 * 7, dtype=torch.float32).reshape(6, 2, 5, 7)
    out = crop_flip(torch, x, torch.Generator().manual_seed(3), torch.Generator().manual_seed(4), padding=2)
    padded = torch.nn.functional.pad(x, (2,) * 4, mode="reflect")
    windows = [padded[:, :, dy:dy + 5, dx:dx + 7] for dy in range(5) for dx in range(5)]
    # one offset for the whole batch: some window matches every image, as is or mirrored
    matches = [w for w in windows if all(torch.equal(o, wi) or torch.equal(o, wi.flip(2)) for o, wi in zip(out, w))]
    assert len(matches) == 1
    flipped = [not torch.equal(o, wi) for o, wi in zip(out, matches[0])]
    assert 0 < sum(flipped) < len(flipped)          # these seeds mirror some of the six, not all


def test_torch_recipe_trains_and_writes_its_rows(cifar_slice, data_dir, tmp_path):
    out = tmp_path / "torch.csv"
    rows = main(["--model", "resnet20", "--train-subset", "300", "--test-subset", "100", "--epochs", "2",
                 "--device", "cpu", "--data", str(cifar_slice), "--data-dir", str(data_dir), "--out", str(out)])
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["test_acc"] <= 1 and r["seconds"] > 0 for r in rows)
    with open(out) as f:
        written = list(csv.DictReader(f))
    assert [float(r["test_acc"]) for r in written] == [r["test_acc"] for r in rows]


def test_torch_recipe_refuses_a_subset_smaller_than_one_batch(cifar_slice, data_dir, capsys):
    with pytest.raises(SystemExit):
        main(["--train-subset", "100", "--data", str(cifar_slice), "--data-dir", str(data_dir), "--device", "cpu"])
    assert "--train-subset 100: 100 training images make no full batch of 128" in capsys.readouterr().err
