"""The run directory (DESIGN.md "Fixed interfaces"): what a run leaves for evaluation and for people.

RUN_DIR/
  config.json        every setting, resolved (backbone, resolution, method, data, config, epochs,
                     batch size, augmentation, hyperparameters, ...)
  metrics.jsonl      one object per step: {"step", "epoch", "loss", "lr", "seconds"}
  tensorboard/       the same scalars as TensorBoard events
  checkpoints/       last.pt (everything for an exact resume, plus "eval_backbone"), epoch-NNNN.pt
  env.json           device, torch/torchvision/python versions, host (and earlier starts)
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import sys
from pathlib import Path

from training.errors import TrainingError


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.env_path = self.path / "env.json"
        self.checkpoints = self.path / "checkpoints"
        self.tensorboard = self.path / "tensorboard"
        self.last_checkpoint = self.checkpoints / "last.pt"

    def prepare_new(self) -> None:
        """A new run needs an empty or missing folder: never mix two runs' files."""
        if self.path.exists() and not self.path.is_dir():
            raise TrainingError(f"--out {self.path}: is a file")
        if self.config_path.exists():
            raise TrainingError(f"--out {self.path}: holds a run already (config.json); pass --resume to continue "
                                "it or choose another --out")
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def read_config(self) -> dict:
        if not self.config_path.is_file():
            raise TrainingError(f"--resume: {self.config_path} does not exist; nothing to resume")
        try:
            return json.loads(self.config_path.read_text())
        except json.JSONDecodeError as error:
            raise TrainingError(f"--resume: {self.config_path} is not valid JSON ({error})") from error

    def write_config(self, config: dict) -> None:
        atomic_write_text(self.config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")

    def write_env(self, device_name: str, world_size: int) -> None:
        import torch
        import torchvision

        env = {
            "device": device_name,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "host": socket.gethostname(),
            "world_size": world_size,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv,
        }
        previous = []
        if self.env_path.is_file():
            try:
                old = json.loads(self.env_path.read_text())
                previous = old.pop("previous", []) + [old]
            except json.JSONDecodeError:
                previous = []
        env["previous"] = previous  # one entry per earlier (re)start of this run
        atomic_write_text(self.env_path, json.dumps(env, indent=2) + "\n")

    def truncate_metrics(self, last_step: int) -> None:
        """On resume: drop lines logged after the checkpoint (the resumed run logs those steps again)."""
        if not self.metrics_path.is_file():
            return
        kept = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= last_step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by the kill
        atomic_write_text(self.metrics_path, "".join(f"{line}\n" for line in kept))


class MetricsLog:
    """metrics.jsonl plus TensorBoard, written by the main process."""

    def __init__(self, run_dir: RunDir, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.file = open(run_dir.metrics_path, "a", encoding="utf-8")
        # purge_step: events after the checkpoint (logged before a kill) are discarded on resume
        self.tensorboard = SummaryWriter(str(run_dir.tensorboard), purge_step=start_step + 1 if start_step else None)

    def log(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        step = record["step"]
        for key in ("loss", "lr"):
            if key in record and record[key] is not None:
                self.tensorboard.add_scalar(f"train/{key}", record[key], step)

    def flush(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.tensorboard.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()
        self.tensorboard.close()
