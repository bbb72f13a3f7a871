"""Fine-tuning of the whole network on a labelled dataset (paper §4.4.2, Table 4: DINO ViT-S/8).

The paper says "transfer learning with fine-tuning" and gives no schedule, so the recipe here is
DeiT's training recipe, which DINO's fine-tuning transfer results (Caron et al. 2021, Table 6)
follow (Touvron et al. 2021): AdamW, lr 5e-4 x batch / 512, weight decay 0.05 (none on biases and
norm parameters), 5 warm-up epochs then cosine decay, label smoothing 0.1. Augmentation is a per-sample random
resized crop and horizontal flip at the pretraining resolution, done on the device by the
pretraining's own sampler (training/crop.py: torchvision's crop parameters, one bilinear gather). Every field is a flag of `eval finetune`; results record them.
The whole train split is used for fitting; test is scored once, at the end.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from training.augment import Ops, ViewRecipe, apply_params, sample_params
from training.eval.datasets import Split, open_dataset
from training.eval.errors import EvalError
from training.eval.features import image_loader, pick_device
from training.eval.results import environment, write_result
from training.progress import progress
from training.schedule import cosine
from training.eval.runs import load_run


@dataclass(frozen=True)
class FinetuneHyperparameters:
    epochs: int = 100  # not stated in the paper; DeiT fine-tunes for 300-1000 on CIFAR at 224 px
    batch_size: int = 256
    base_lr: float = 5e-4  # per 512 images (DeiT), scaled linearly with the batch
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    label_smoothing: float = 0.1
    crop_scale: tuple[float, float] = (0.25, 1.0)
    seed: int = 0

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise EvalError("finetune: --epochs and --batch-size must be at least 1")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise EvalError(f"finetune: crop scale {self.crop_scale} must satisfy 0 < low <= high <= 1")


def decode_split(split: Split, size: int, workers: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a split at `size` as one uint8 (N, 3, size, size) tensor, with labels."""
    images, labels = [], []
    loader = image_loader(split, size, 512, workers)
    bar = progress(len(loader), f"decode {split.where}", "batch")
    for batch, y in loader:
        images.append(batch)
        labels.append(y)
        bar.update(1)
    bar.close()
    return torch.cat(images), torch.cat(labels).long()


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalization parameters (1-d tensors), as DeiT/timm."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return cosine(peak, 0.0, (step - warmup) / max(1, total - warmup))


def crop_and_flip(images: torch.Tensor, index: torch.Tensor, size: int, scale: tuple[float, float],
                  generator: torch.Generator) -> torch.Tensor:
    """Views of `images[index]` (uint8, (N, S, S, 3) on the device): a random resized crop of area
    `scale` and a horizontal flip per sample, float in [0, 1]."""
    recipe = ViewRecipe(crop_scale=scale, rotation=0.0, flip_p=0.5, jitter_p=0.0, grayscale_p=0.0)
    params = sample_params(index.shape[0], recipe, generator)
    return apply_params(images, params, size, Ops(jitter=False, gray=False), normalize=False, index=index)


def _normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std, batch_size: int,
             device: torch.device) -> float:
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True).float().div_(255)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(_normalize(batch, mean, std))
        correct += int((logits.argmax(1).cpu() == labels[start:start + batch_size]).sum())
    return correct / images.shape[0]


def finetune(run_dir: str | Path, dataset: str, hp: FinetuneHyperparameters = FinetuneHyperparameters(),
             device: str = "auto", workers: int | None = None, image_column: str | None = None,
             label_column: str | None = None) -> tuple[dict, Path]:
    """Fine-tune backbone + a new linear head on train, report top-1 on test."""
    hp.check()
    started = time.perf_counter()
    run = load_run(run_dir)
    data = open_dataset(dataset, image_column, label_column)
    target = pick_device(device)
    torch.manual_seed(hp.seed)
    generator = torch.Generator(device=target).manual_seed(hp.seed)
    train_x, train_y = decode_split(data.train, run.resolution, workers)
    test_x, test_y = decode_split(data.test, run.resolution, workers)
    train_hwc = train_x.permute(0, 2, 3, 1).contiguous().to(target)  # (N, S, S, 3) uint8: what crops read
    train_y = train_y.to(target)

    model = nn.Sequential(run.backbone, nn.Linear(run.width, len(data.classes))).to(target)
    peak_lr = hp.base_lr * hp.batch_size / 512
    optimizer = torch.optim.AdamW(decay_groups(model, hp.weight_decay), lr=peak_lr)
    steps_per_epoch = max(1, train_x.shape[0] // hp.batch_size)  # drop the last partial batch
    total = hp.epochs * steps_per_epoch
    warmup = min(total, hp.warmup_epochs * steps_per_epoch)
    history, step = [], 0
    bar = progress(total, f"finetune {data.slug}", "step")
    for epoch in range(hp.epochs):
        model.train()
        order = torch.randperm(train_x.shape[0], device=target, generator=generator)
        losses = []
        for index in order[: steps_per_epoch * hp.batch_size].view(steps_per_epoch, -1):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total, warmup, peak_lr)
            images = crop_and_flip(train_hwc, index, run.resolution, hp.crop_scale, generator)
            with torch.autocast(target.type, dtype=torch.bfloat16, enabled=target.type == "cuda"):
                logits = model(_normalize(images, run.mean, run.std))
            loss = F.cross_entropy(logits.float(), train_y[index], label_smoothing=hp.label_smoothing)
            if not torch.isfinite(loss):
                raise EvalError(f"finetune: loss became {loss.item()} at epoch {epoch}, step {step}; stopping")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            step += 1
            bar.update(1)
        history.append({"epoch": epoch, "loss": float(torch.stack(losses).mean())})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    bar.close()
    result = {
        "top1": accuracy(model, test_x, test_y, run.mean, run.std, hp.batch_size, target),
        "train_top1": accuracy(model, train_x.cpu(), train_y.cpu(), run.mean, run.std, hp.batch_size, target),
        "history": history, "hyperparameters": {**asdict(hp), "peak_lr": peak_lr, "steps": total},
        "kind": "finetune", "dataset": data.name, "run": str(run.run_dir),
        "checkpoint_sha256": run.checkpoint_sha256, "resolution": run.resolution,
        "num_classes": len(data.classes), "num_train": int(train_x.shape[0]), "num_test": int(test_x.shape[0]),
        "protocol": "whole network + linear head, AdamW/cosine/label smoothing (DeiT recipe, as DINO)",
        "seconds": round(time.perf_counter() - started, 3), **environment(target),
    }
    return result, write_result(run.run_dir, "finetune", data.slug, result)
