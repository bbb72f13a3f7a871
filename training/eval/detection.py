"""Faster R-CNN R50-C4 fine-tuned on VOC07+12 trainval, scored on VOC07 test (paper §4.3, Table 3).

The paper uses "similar settings as in MoCo-V2": detectron2's `pascal_voc_R_50_C4_24k_moco.yaml`
(He et al. 2020, App. A; MoCo repo `detection/configs`). This builds the same detector from
torchvision parts:
- backbone: the pretrained ResNet's stem and layers 1-3 (stride 16, 1024 channels for R50);
- RPN: one 3x3 conv + objectness/box convs (torchvision `RPNHead`), anchors of sizes 32-512 and
  aspect ratios 0.5/1/2 on that single map (detectron2's C4 defaults), 12000/6000 boxes before
  NMS and 2000/1000 after, for training/testing;
- box head: 14x14 RoIAlign (aligned, sampling ratio 0) -> ResNet layer 4 (stride 2 -> 7x7) ->
  an extra BatchNorm (MoCo's `Res5ROIHeadsExtraNorm`) -> average pool -> class and box layers;
- every layer fine-tuned (FREEZE_AT 0) with BatchNorm in training mode over the 16-image batch
  (MoCo uses SyncBN over 8 GPUs x 2 images: the same statistics on one GPU);
- SGD 0.02 for batch 16, momentum 0.9, weight decay 1e-4, 100 linear warm-up iterations, 24k
  iterations with lr x0.1 at 18k and 22k; shorter edge 480-800 (step 32) in training, 800 in
  testing, longer edge at most 1333; horizontal flip.
Not reproduced: detectron2's precise-BN pass before testing and its aspect-ratio grouping.
Long runs save their state every `checkpoint_every` iterations and resume from it.
"""
from __future__ import annotations

import io
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.resnet import ResNet
from torchvision.ops import MultiScaleRoIAlign, roi_align

from pair_manifest.atomic import write_atomically
from training.eval.errors import EvalError
from training.eval.features import pick_device
from training.eval.results import environment, write_result
from training.eval.runs import load_run
from training.eval.voc import DetectionImages, DetectionSplit, collate, open_detection
from training.eval.voc_eval import evaluate_detections
from training.progress import progress


@dataclass(frozen=True)
class DetectionHyperparameters:
    """MoCo v2's detectron2 VOC config (Base-RCNN-C4-BN.yaml + pascal_voc_R_50_C4_24k.yaml)."""

    iterations: int = 24_000
    batch_size: int = 16
    base_lr: float = 0.02  # for a batch of 16, scaled linearly with the batch
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: tuple[float, ...] = (18_000 / 24_000, 22_000 / 24_000)  # fractions of `iterations`
    warmup_iterations: int = 100
    warmup_factor: float = 1e-3
    min_sizes_train: tuple[int, ...] = tuple(range(480, 801, 32))
    min_size_test: int = 800
    max_size: int = 1333
    rpn_pre_nms_train: int = 12_000
    rpn_post_nms_train: int = 2_000
    rpn_pre_nms_test: int = 6_000
    rpn_post_nms_test: int = 1_000
    rpn_batch_per_image: int = 256
    roi_batch_per_image: int = 512
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    roi_size: int = 14
    use_07_metric: bool = True  # VOC2007 test is scored with the 11-point rule
    checkpoint_every: int = 1_000
    log_every: int = 20
    seed: int = 0

    def check(self) -> None:
        if self.iterations < 1 or self.batch_size < 1:
            raise EvalError("detection: --iterations and --batch-size must be at least 1")
        if not self.min_sizes_train or min(self.min_sizes_train) < 32 or self.min_size_test < 32:
            raise EvalError("detection: image sizes must be at least 32 pixels")


class C4RoIAlign(MultiScaleRoIAlign):
    """Aligned RoIAlign on the single stride-16 map (detectron2's ROIAlignV2). A subclass of
    torchvision's pooler only because FasterRCNN accepts nothing else as `box_roi_pool`."""

    def __init__(self, output_size: int, spatial_scale: float):
        super().__init__(featmap_names=["0"], output_size=output_size, sampling_ratio=0)
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, features: dict, proposals: list[torch.Tensor], image_shapes) -> torch.Tensor:
        feature = features["0"]
        return roi_align(feature, [p.to(feature.dtype) for p in proposals], self.output_size,
                         spatial_scale=self.spatial_scale, sampling_ratio=0, aligned=True)


class Res5Head(nn.Module):
    """ResNet layer 4 on each 14x14 RoI (stride 2 -> 7x7), extra BatchNorm, average pool."""

    def __init__(self, layer4: nn.Module, channels: int):
        super().__init__()
        self.res5 = layer4
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, rois: torch.Tensor) -> torch.Tensor:
        return self.norm(self.res5(rois)).mean(dim=(2, 3))  # (R, channels)


def c4_detector(backbone: nn.Module, num_classes: int, hp: DetectionHyperparameters, mean, std) -> FasterRCNN:
    """A Faster R-CNN C4 detector whose trunk and box head are the pretrained ResNet's layers."""
    if not isinstance(backbone, ResNet):
        raise EvalError(f"detection: needs a ResNet backbone (R50-C4), got {type(backbone).__name__}")
    trunk = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool,
                          backbone.layer1, backbone.layer2, backbone.layer3)
    with torch.no_grad():
        probe = trunk.eval()(torch.zeros(1, 3, 64, 64))
    trunk.train()
    trunk.out_channels = probe.shape[1]
    stride = 64 // probe.shape[-1]
    head_channels = _layer4_channels(backbone)
    anchors = AnchorGenerator(sizes=(hp.anchor_sizes,), aspect_ratios=((0.5, 1.0, 2.0),))
    return FasterRCNN(
        trunk, num_classes=None, rpn_anchor_generator=anchors,
        box_roi_pool=C4RoIAlign(hp.roi_size, 1.0 / stride),
        box_head=Res5Head(backbone.layer4, head_channels),
        box_predictor=FastRCNNPredictor(head_channels, num_classes + 1),
        min_size=hp.min_sizes_train, max_size=hp.max_size, image_mean=list(mean), image_std=list(std),
        rpn_pre_nms_top_n_train=hp.rpn_pre_nms_train, rpn_post_nms_top_n_train=hp.rpn_post_nms_train,
        rpn_pre_nms_top_n_test=hp.rpn_pre_nms_test, rpn_post_nms_top_n_test=hp.rpn_post_nms_test,
        rpn_batch_size_per_image=hp.rpn_batch_per_image, box_batch_size_per_image=hp.roi_batch_per_image,
        box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100,
    )


def _layer4_channels(backbone: ResNet) -> int:
    last = backbone.layer4[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


def learning_rate(iteration: int, hp: DetectionHyperparameters, peak: float) -> float:
    """detectron2 WarmupMultiStepLR: linear warm-up from warmup_factor, then x0.1 at each step."""
    factor = 1.0
    if iteration < hp.warmup_iterations:
        alpha = iteration / hp.warmup_iterations
        factor = hp.warmup_factor * (1 - alpha) + alpha
    decays = sum(iteration >= round(step * hp.iterations) for step in hp.lr_steps)
    return peak * factor * 0.1 ** decays


def _forever(loader):
    while True:
        yield from loader


def train_detector(model: FasterRCNN, split: DetectionSplit, hp: DetectionHyperparameters, device: torch.device,
                   workers: int, state_path: Path | None = None) -> list[dict]:
    """SGD on the detector's summed losses for `hp.iterations`; returns the logged losses."""
    torch.manual_seed(hp.seed)
    peak = hp.base_lr * hp.batch_size / 16
    optimizer = torch.optim.SGD(model.parameters(), lr=peak, momentum=hp.momentum, weight_decay=hp.weight_decay)
    start, history = 0, []
    if state_path is not None and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=False)
        if state.get("hyperparameters") == asdict(hp):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start, history = state["iteration"], state["history"]
    loader = torch.utils.data.DataLoader(
        DetectionImages(split, flip=True), batch_size=hp.batch_size, shuffle=True, num_workers=workers,
        collate_fn=collate, drop_last=len(split) >= hp.batch_size, persistent_workers=workers > 0,
    )
    batches = _forever(loader)
    model.to(device).train()
    bar = progress(hp.iterations, "detection fine-tuning", "it", initial=start)
    for iteration in range(start, hp.iterations):
        bar.update(1)
        images, targets = next(batches)
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(iteration, hp, peak)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            losses = model(images, targets)
        loss = sum(value.float() for value in losses.values())
        if not torch.isfinite(loss):
            raise EvalError(f"detection: loss became {loss.item()} at iteration {iteration}; stopping")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if iteration % hp.log_every == 0 or iteration == hp.iterations - 1:
            row = {"iteration": iteration, "loss": loss.item(), **{k: v.item() for k, v in losses.items()}}
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
        done = iteration + 1
        if state_path is not None and (done % hp.checkpoint_every == 0) and done < hp.iterations:
            buffer = io.BytesIO()
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": done,
                        "history": history, "hyperparameters": asdict(hp)}, buffer)
            try:
                write_atomically(state_path, lambda handle: handle.write(buffer.getbuffer()))
            except OSError as error:
                raise EvalError(f"{state_path}: the detection state could not be written "
                                f"({error.strerror or error}); the previous state is intact") from None
    bar.close()
    return history


@torch.no_grad()
def predict(model: FasterRCNN, split: DetectionSplit, hp: DetectionHyperparameters, device: torch.device,
            workers: int, batch_size: int = 8) -> dict:
    """image index -> (boxes, scores, labels) in original image pixels."""
    model.to(device).eval()
    model.transform.min_size = (hp.min_size_test,)
    loader = torch.utils.data.DataLoader(DetectionImages(split, flip=False), batch_size=batch_size,
                                         num_workers=workers, collate_fn=collate)
    predictions = {}
    bar = progress(len(loader), "detection test", "batch")
    for images, targets in loader:
        bar.update(1)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            outputs = model([image.to(device) for image in images])
        for target, output in zip(targets, outputs):
            predictions[target["index"]] = (output["boxes"].float().cpu().numpy(), output["scores"].float().cpu().numpy(),
                                            output["labels"].cpu().numpy())
    bar.close()
    model.transform.min_size = hp.min_sizes_train
    return predictions


def ground_truth(split: DetectionSplit) -> dict:
    return {i: (a.boxes, a.labels, a.difficult) for i, a in enumerate(split.annotations)}


def detection_eval(run_dir: str | Path, dataset: str, hp: DetectionHyperparameters = DetectionHyperparameters(),
                   device: str = "auto", workers: int | None = None,
                   classes: tuple[str, ...] | None = None) -> tuple[dict, Path]:
    """Fine-tune the run's backbone as Faster R-CNN C4 on train, report AP/AP50/AP75 on test."""
    hp.check()
    started = time.perf_counter()
    run = load_run(run_dir)
    data = open_detection(dataset, classes)
    target = pick_device(device)
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    model = c4_detector(run.backbone, len(data.classes), hp, run.mean, run.std)
    state_path = run.eval_dir / f"detection-{data.slug}-state.pt"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    # On CPU, denormal floats in the freshly initialized heads make convolutions several times
    # slower; flushing them to zero changes nothing measurable (GPUs flush in their fast paths).
    flushed = target.type == "cpu" and torch.set_flush_denormal(True)
    try:
        history = train_detector(model, data.train, hp, target, workers, state_path)
        predictions = predict(model, data.test, hp, target, workers)
    finally:
        if flushed:
            torch.set_flush_denormal(False)
    scores = evaluate_detections(predictions, ground_truth(data.test), data.classes, hp.use_07_metric)
    result = {
        **scores, "kind": "detection", "dataset": data.name, "run": str(run.run_dir),
        "checkpoint_sha256": run.checkpoint_sha256, "classes": list(data.classes),
        "num_train": len(data.train), "num_test": len(data.test), "history": history,
        "hyperparameters": asdict(hp),
        "protocol": "Faster R-CNN R50-C4 from torchvision parts, MoCo v2 detectron2 VOC schedule",
        "seconds": round(time.perf_counter() - started, 3), **environment(target),
    }
    path = write_result(run.run_dir, "detection", data.slug, result)
    if state_path.is_file():
        state_path.unlink()  # finished: the result is written, the resume state is spent
    return result, path
