"""Checkpoints: everything an exact resume needs, and the network evaluation reads.

`checkpoints/last.pt` holds: `step` (steps done), `epoch`, `model` (the method's state dict: online and
target networks, heads, BatchNorm statistics, queues and centres), `optimizer` (momentum buffers,
Adam moments), `rng` (torch CPU and CUDA, numpy, Python), `config`, and `eval_backbone`: the state
dict of `Method.eval_backbone()` (online network for BYOL/MoCo, teacher for DINO, backbone otherwise),
loadable into `training.backbones.build_backbone(spec)`. Data order and augmentation are functions of
(seed, step), so the step is their whole state. Files are written to a temporary name, fsynced and
renamed: a kill or a full disk leaves the previous checkpoint intact.

`load_eval_backbone(run_dir)` -> (backbone module with the trained weights, config dict).
"""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pair_manifest.atomic import write_atomically
from training.errors import TrainingError, write_failed


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


def save_checkpoint(path: Path, payload: dict, previous_step: int | None = None) -> None:
    """Serialize in memory, then replace `path` atomically: a kill, a full disk or a read-only
    folder leaves the previous file whole (torch.save straight into a file that the disk cuts off
    fails with an opaque stream error, and would leave half a file behind)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        write_atomically(path, lambda handle: handle.write(buffer.getbuffer()))
    except OSError as error:
        if previous_step:
            kept = f"the checkpoint of step {previous_step} there is intact"
        else:
            kept = "no earlier checkpoint was replaced"
        raise write_failed(path, error, "the checkpoint",
                           f"{kept}: free space (or fix the folder) and continue with --resume") from None


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
    path = run / "checkpoints" / f"{checkpoint}.pt"
    state = load_checkpoint(path)
    if "eval_backbone" not in state:
        raise TrainingError(f"{path}: holds no 'eval_backbone'")
    check_same_run(config, state.get("config"), config_path, path)
    model, _ = build_backbone(spec)
    model.load_state_dict(state["eval_backbone"])
    return model.eval(), config


def check_same_run(config: dict, trained: dict | None, config_path: Path, checkpoint: Path) -> None:
    """config.json must describe the network the checkpoint holds: a config edited or copied from
    another run would make evaluation load the wrong network's recipe (or report the wrong method)."""
    if not isinstance(trained, dict):
        return  # a checkpoint written without its config (a bare backbone): nothing to compare
    said, was = config.get("method"), trained.get("method")
    if said != was:
        raise TrainingError(f"{config_path}: names method {said!r}, but {checkpoint} was trained with {was!r}; "
                            "restore the run's own config.json")
    said, was = config.get("backbone"), trained.get("backbone")
    if isinstance(said, dict) and isinstance(was, dict) and said != was:
        raise TrainingError(f"{config_path}: names backbone {said}, but {checkpoint} was trained with {was}; "
                            "restore the run's own config.json")
