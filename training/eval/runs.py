"""Open a training run for evaluation: the network to evaluate, its input size and identity.

A run folder holds `config.json` (with `"backbone": {"name", "stem", "image_size"}` and
`"resolution"`) and `checkpoints/last.pt` whose `eval_backbone` entry is the state_dict of the
network the method says to evaluate (online network for BYOL/MoCo, teacher for DINO; see
`training/methods/__init__.py`). Loading is the training package's `load_eval_backbone`. The
checkpoint's SHA-256 keys the feature cache, so a resumed or retrained run never reuses stale
features.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from training.eval.errors import EvalError

CHECKPOINT = Path("checkpoints") / "last.pt"
# Normalization of the pretraining inputs when the run's config does not record its own:
# the ImageNet statistics every method's reference code uses.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class EvalRun:
    run_dir: Path
    backbone: nn.Module
    width: int  # feature dimension the backbone returns
    config: dict
    resolution: int  # the pretraining input size: evaluation images are resized to it
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    checkpoint_sha256: str

    @property
    def eval_dir(self) -> Path:
        return self.run_dir / "eval"


def read_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise EvalError(f"{run_dir}: not a run folder (no config.json)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EvalError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("backbone"), dict):
        raise EvalError(f"{path}: field 'backbone' ({{name, stem, image_size}}) is missing")
    return config


def resolution_of(config: dict, where: str) -> int:
    value = config.get("resolution", config["backbone"].get("image_size"))
    if not isinstance(value, int) or value < 8:
        raise EvalError(f"{where}: field 'resolution' must be an integer >= 8, got {value!r}")
    return value


def normalization_of(config: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    mean = tuple(data.get("mean", IMAGENET_MEAN))
    std = tuple(data.get("std", IMAGENET_STD))
    return mean, std


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def load_run(run_dir: str | Path) -> EvalRun:
    """The run's evaluation network in eval mode on the CPU (callers move it to their device)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvalError(f"--run {run_dir}: no such folder")
    config = read_config(run_dir)
    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.is_file():
        raise EvalError(f"{run_dir}: no {CHECKPOINT} (has the run finished its first epoch?)")
    backbone, config = _load_eval_backbone(run_dir)
    resolution = resolution_of(config, str(run_dir / "config.json"))
    mean, std = normalization_of(config)
    from training.backbones import feature_width

    backbone.eval()
    return EvalRun(
        run_dir=run_dir, backbone=backbone, width=feature_width(backbone, resolution), config=config,
        resolution=resolution, mean=mean, std=std, checkpoint_sha256=file_sha256(checkpoint),
    )


def _load_eval_backbone(run_dir: Path) -> tuple[nn.Module, dict]:
    """The training package's loader (`training.checkpoints.load_eval_backbone`); a state dict that
    does not fit the configured backbone becomes a one-line error instead of a traceback."""
    from training.checkpoints import load_eval_backbone

    try:
        return load_eval_backbone(run_dir)
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0]
        name = (read_config(run_dir).get("backbone") or {}).get("name")
        raise EvalError(f"{run_dir / CHECKPOINT}: eval_backbone does not fit backbone {name} ({first})") from None
