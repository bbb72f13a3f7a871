"""The run directory (docs/ARCHITECTURE.md, "Fixed interfaces"): what a run leaves for evaluation
and for people.

RUN_DIR/
  config.json        every setting, resolved (backbone, resolution, method, data, config, epochs,
                     batch size, augmentation, hyperparameters, ...)
  metrics.jsonl      one object per step: {"step", "epoch", "loss", "lr", "seconds"}
  tensorboard/       the same scalars as TensorBoard events
  checkpoints/       last.pt (everything for an exact resume, plus "eval_backbone"), epoch-NNNN.pt
  env.json           device, torch/torchvision/python versions, host (and earlier starts)
  .lock              held by the process writing the run (pair_manifest/locks.py)

Whole files are replaced atomically (`pair_manifest.atomic.write_atomically`); metrics.jsonl is
appended and fsynced at every flush, and cut back to the checkpoint's step on resume. A write the
machine refuses (full disk, read-only file system) ends the run with one line naming the file.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import sys
from pathlib import Path

from pair_manifest.atomic import write_atomically
from training.config import read_run_config
from training.errors import TrainingError, write_failed

AFTER_FAILED_WRITE = "the last checkpoint is intact: free space (or fix the folder) and continue with --resume"


def write_text(path: Path, text: str, what: str) -> None:
    try:
        write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
    except OSError as error:
        raise write_failed(path, error, what, AFTER_FAILED_WRITE) from None


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.env_path = self.path / "env.json"
        self.checkpoints = self.path / "checkpoints"
        self.tensorboard = self.path / "tensorboard"
        self.last_checkpoint = self.checkpoints / "last.pt"

    def check_is_folder(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise TrainingError(f"--out {self.path}: is a file, not a run folder; choose another --out")

    def check_new(self) -> None:
        """A new run needs an empty or missing folder: never mix two runs' files."""
        self.check_is_folder()
        if self.config_path.exists():
            raise TrainingError(f"--out {self.path}: holds a run already (config.json); pass --resume to continue "
                                "it or choose another --out")

    def prepare_new(self) -> None:
        self.check_new()
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise write_failed(self.checkpoints, error, "the run folder", "nothing was written") from None

    def read_config(self) -> dict:
        return read_run_config(self.config_path)

    def write_config(self, config: dict) -> None:
        write_text(self.config_path, json.dumps(config, indent=2, sort_keys=True) + "\n", "config.json")

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
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError):
                previous = []  # a damaged env.json is replaced, not trusted
        env["previous"] = previous  # one entry per earlier (re)start of this run
        write_text(self.env_path, json.dumps(env, indent=2) + "\n", "env.json")

    def truncate_metrics(self, last_step: int) -> None:
        """On resume: drop lines logged after the checkpoint (the resumed run logs those steps again)."""
        if not self.metrics_path.is_file():
            return
        kept = []
        for line in self.metrics_path.read_text(errors="replace").splitlines():
            try:
                if json.loads(line)["step"] <= last_step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by the kill
        write_text(self.metrics_path, "".join(f"{line}\n" for line in kept), "metrics.jsonl")


class MetricsLog:
    """metrics.jsonl plus TensorBoard, written by the main process."""

    def __init__(self, run_dir: RunDir, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir.metrics_path
        try:
            self.file = open(self.path, "a", encoding="utf-8")
            # purge_step: events after the checkpoint (logged before a kill) are discarded on resume
            self.tensorboard = SummaryWriter(str(run_dir.tensorboard),
                                             purge_step=start_step + 1 if start_step else None)
        except OSError as error:
            raise write_failed(run_dir.path, error, "the metrics log", AFTER_FAILED_WRITE) from None

    def log(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        step = record["step"]
        for key in ("loss", "lr"):
            if key in record and record[key] is not None:
                self.tensorboard.add_scalar(f"train/{key}", record[key], step)

    def flush(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.tensorboard.flush()
        except OSError as error:
            raise write_failed(self.path, error, "metrics", AFTER_FAILED_WRITE) from None

    def close(self, quiet: bool = False) -> None:
        """Flush and close; with `quiet` (the run is already failing) a second failure is dropped."""
        try:
            self.flush()
        except TrainingError:
            if not quiet:
                raise
        finally:
            for closing in (self.file.close, self.tensorboard.close):
                try:
                    closing()
                except OSError as error:
                    if not quiet:
                        raise write_failed(self.path, error, "metrics", AFTER_FAILED_WRITE) from None
