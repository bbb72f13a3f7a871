"""Checkpoints: everything an exact resume needs, and the network evaluation reads.

`checkpoints/last.pt` holds: `step` (steps done), `epoch`, `model` (the method's state dict: online and
target networks, heads, BatchNorm statistics, queues and centres), `optimizer` (momentum buffers,
Adam moments), `rng` (torch CPU and CUDA, numpy, Python), `config`, and `eval_backbone`: the state
dict of `Method.eval_backbone()` (online network for BYOL/MoCo, teacher for DINO, backbone otherwise),
loadable into `training.backbones.build_backbone(spec)`. Data order and augmentation are functions of
(seed, step), so the step is their whole state. Files are written to a temporary name, fsynced and
renamed: a kill leaves the previous checkpoint intact.

`load_eval_backbone(run_dir)` -> (backbone module with the trained weights, config dict).
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.errors import TrainingError


def rng_state() -> dict:
    """All random states, as tensors and plain lists (loadable with weights_only=True)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    python_version, python_internal, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": python_version, "internal": list(python_internal), "gauss": python_gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def save_checkpoint(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{path}: no checkpoint") from None
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file: one line naming it
        raise TrainingError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from error


def load_eval_backbone(run_dir: str | Path, checkpoint: str = "last") -> tuple[nn.Module, dict]:
    """The network to evaluate, rebuilt from RUN_DIR/config.json and loaded from
    RUN_DIR/checkpoints/<checkpoint>.pt ("last", or "epoch-0200" for a kept epoch), in eval mode."""
    from training.backbones import BackboneSpec, build_backbone

    run = Path(run_dir).expanduser()
    config_path = run / "config.json"
    if not config_path.is_file():
        raise TrainingError(f"--run {run}: no config.json; not a training run directory")
    try:
        config = json.loads(config_path.read_text())
        spec = BackboneSpec(**config["backbone"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise TrainingError(f"{config_path}: no valid 'backbone' entry ({error})") from error
    state = load_checkpoint(run / "checkpoints" / f"{checkpoint}.pt")
    if "eval_backbone" not in state:
        raise TrainingError(f"{run / 'checkpoints' / (checkpoint + '.pt')}: holds no 'eval_backbone'")
    model, _ = build_backbone(spec)
    model.load_state_dict(state["eval_backbone"])
    return model.eval(), config
