"""Where an evaluation writes its result, and how: `RUN_DIR/eval/<kind>-<dataset>.json`.

Written atomically (temporary file, fsync, rename), so `reproduce` never reads half a result, and
stamped with what produced it: device, torch version, time.
"""
from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from pair_manifest.atomic import write_atomically
from training.eval.errors import EvalError

KINDS = ("linear", "knn", "finetune", "detection")


def result_path(run_dir: str | Path, kind: str, dataset_slug: str) -> Path:
    return Path(run_dir) / "eval" / f"{kind}-{dataset_slug}.json"


def environment(device) -> dict:
    import torch

    name = torch.cuda.get_device_name(device) if getattr(device, "type", "") == "cuda" else platform.processor() or "cpu"
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_result(run_dir: str | Path, kind: str, dataset_slug: str, result: dict) -> Path:
    path = result_path(run_dir, kind, dataset_slug)
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    try:
        write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
    except OSError as error:
        raise EvalError(f"{path}: the result could not be written ({error.strerror or error})") from None
    return path


def read_result(run_dir: str | Path, kind: str, dataset_slug: str) -> dict | None:
    path = result_path(run_dir, kind, dataset_slug)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
