"""Where an evaluation writes its result, and how: `RUN_DIR/eval/<kind>-<dataset>.json`.

Written atomically (temporary file, fsync, rename), so `reproduce` never reads half a result, and
stamped with what produced it: device, torch version, time.
"""
from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

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
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with temporary.open("w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def read_result(run_dir: str | Path, kind: str, dataset_slug: str) -> dict | None:
    path = result_path(run_dir, kind, dataset_slug)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
