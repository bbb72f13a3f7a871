"""Fine-tuning: per-sample GPU-style augmentation, and the whole network learning on real images."""
from __future__ import annotations

import json

import torch

from training.eval.finetune import FinetuneHyperparameters, crop_and_flip, finetune, learning_rate

from .eval_support import make_run, small_cifar


def test_each_sample_gets_its_own_crop_and_a_full_crop_is_the_image():
    image = (torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    index = torch.zeros(8, dtype=torch.long)  # eight views of one image
    crops = crop_and_flip(image, index, 16, (0.2, 0.5), torch.Generator().manual_seed(1))
    distinct = {tuple(c.flatten()[:20].round(decimals=4).tolist()) for c in crops}
    assert len(distinct) == 8  # one parameter draw per sample, not per batch
    whole = crop_and_flip(image, index, 16, (1.0, 1.0), torch.Generator().manual_seed(2))
    source = image[0].permute(2, 0, 1).float() / 255
    for crop in whole:  # the full box resampled at its own size is the image, maybe mirrored
        assert torch.allclose(crop, source, atol=1e-5) or torch.allclose(crop, source.flip(-1), atol=1e-5)


def test_schedule_warms_up_then_decays_to_zero():
    assert learning_rate(0, 100, 10, 1.0) == 0.1
    assert learning_rate(9, 100, 10, 1.0) == 1.0
    assert abs(learning_rate(100, 100, 10, 1.0)) < 1e-12


def test_whole_network_fine_tunes_and_writes_its_result(cifar10_root, tmp_path):
    data = small_cifar(cifar10_root, tmp_path / "cifar10_small", train_per_class=10, test_per_class=5)
    run = make_run(tmp_path / "run", resolution=32)
    before = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["eval_backbone"]["layer1.0.conv1.weight"]
    hp = FinetuneHyperparameters(epochs=6, batch_size=20, base_lr=2e-3 * 512 / 20, warmup_epochs=1, label_smoothing=0.0)
    result, path = finetune(run, str(data), hp, device="cpu", workers=0)
    written = json.loads(path.read_text())
    assert path.name == "finetune-cifar10_small.json" and 0.0 <= written["top1"] <= 1.0
    assert written["num_train"] == 100 and written["hyperparameters"]["steps"] == 6 * 5
    losses = [row["loss"] for row in written["history"]]
    assert losses[-1] < 0.8 * losses[0]  # the network (not just the head) fits the training images
    assert written["train_top1"] > 0.3
    # The run's checkpoint is untouched: fine-tuning works on a copy in memory.
    after = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["eval_backbone"]["layer1.0.conv1.weight"]
    assert torch.equal(before, after)
