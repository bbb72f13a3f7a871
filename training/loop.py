"""The training loop: data on the device, per-sample augmentation, one step, schedules, logging,
checkpoints, and DistributedDataParallel under `torchrun`.

Per step: take this step's rows from the device cache, augment both views per sample, run the
step (eager, compiled, or replayed from a CUDA graph), update EMA targets, queue the loss on the
device. Every `log_every` steps (and before every checkpoint) the queued losses are read back in
one transfer, checked (a NaN or infinite loss stops the run with a message naming the step and the
last good checkpoint), written to metrics.jsonl and TensorBoard. Nothing in the step waits on the
host, so the GPU runs ahead of Python.

Set-up order (`Trainer.setup`): every setting is checked before anything slow or anything written:
hyperparameters, then the model and its optimizer (which check the method's recipe against the
network), then the data (the one long part: decoding), then schedules and the resumed state; the
run folder is written last. One process at a time writes a run folder (`train` holds
`pair_manifest.locks.one_writer` on RUN_DIR/.lock for the whole run).

Precision: bf16 autocast on CUDA (losses in float32, see training/precision.py), float32 on CPU.
Memory format: channels_last for the model and the views.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

from pair_manifest.locks import lock_inside, one_writer
from training import distributed
from training.augment import PairAugment, view_recipes
from training.backbones import BackboneSpec, build_backbone
from training.checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from training.config import CONFIG_FORMAT, TrainConfig, json_ready, resolve_hyperparameters, resumed
from training.data.batches import PairBatches
from training.data.cache import load_dataset
from training.errors import NonFiniteLoss, TrainingError
from training.methods import method_module
from training.optim import build_optimizer
from training.progress import progress
from training.recipe import flat_fields
from training.run_dir import MetricsLog, RunDir
from training.schedule import WarmupCosine, cosine
from training.step import EagerStep, GraphedStep


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def choose_precision(cfg: TrainConfig, device: torch.device) -> tuple[str, torch.dtype | None]:
    """("bf16" | "fp32", the autocast dtype or None). On CUDA also the fixed-shape kernel choices."""
    if device.type == "cuda":  # GPU-only: fixed shapes, so let cuDNN pick its fastest kernels
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    return precision, (torch.bfloat16 if precision == "bf16" else None)


def build_method(cfg: TrainConfig, hp, ctx: distributed.DistContext) -> torch.nn.Module:
    """The method around its backbone, the same initial weights on every rank, on the device."""
    torch.manual_seed(cfg.seed)
    try:
        backbone, width = build_backbone(BackboneSpec(cfg.backbone, cfg.stem, cfg.resolution))
        method = method_module(cfg.method).Method(backbone, width, hp)
    except ValueError as error:
        raise TrainingError(f"--method {cfg.method} / --backbone {cfg.backbone}: {error}") from error
    except (RuntimeError, MemoryError) as error:  # e.g. widths a typo made too large to allocate
        raise TrainingError(f"--method {cfg.method}: the model cannot be built with these hyperparameters "
                            f"({str(error).splitlines()[0][:200]})") from error
    method.to(ctx.device, memory_format=torch.channels_last)
    if ctx.world_size > 1:
        distributed.convert_to_global_batchnorm(method)
    return method


@dataclasses.dataclass
class Schedules:
    """Every per-step value of a run: learning rate per parameter group, weight decay factor."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    lr: list  # per optimizer group: a WarmupCosine, or None for a constant lr (the peak)
    weight_decay: tuple[float, float] | None  # (start, end) of a cosine weight-decay schedule

    @staticmethod
    def of(recipe, optimizer, steps_per_epoch: int, epochs: int) -> "Schedules":
        total = epochs * steps_per_epoch
        warmup = min(round(recipe.warmup_epochs * steps_per_epoch), total)
        lr = [None if group["constant_lr"] else
              WarmupCosine(group["peak_lr"], total, warmup,
                           recipe.min_lr if recipe.min_lr is not None else group["peak_lr"] * recipe.final_lr_ratio)
              for group in optimizer.param_groups]
        decay = (recipe.weight_decay, recipe.weight_decay_end) \
            if recipe.weight_decay_end is not None and recipe.weight_decay else None
        return Schedules(steps_per_epoch, total, warmup, lr, decay)

    def weight_decay_factor(self, step: int) -> float:
        """Weight decay at `step` relative to the recipe's (main_dino.py's cosine from start to end)."""
        if self.weight_decay is None:
            return 1.0
        start, end = self.weight_decay
        return cosine(start, end, step / max(self.total_steps - 1, 1)) / start

    def apply(self, optimizer, step: int) -> float:
        """Learning rate (and weight decay) of every group for `step`; returns the first group's lr."""
        wd_factor = self.weight_decay_factor(step)
        first = None
        for group, schedule in zip(optimizer.param_groups, self.lr):
            lr = group["peak_lr"] if schedule is None else schedule(step)
            first = lr if first is None else first
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
            wd = group["base_weight_decay"] * wd_factor
            if isinstance(group["weight_decay"], torch.Tensor):
                group["weight_decay"].fill_(wd)
            elif group["weight_decay"] != 0.0 or wd != 0.0:
                group["weight_decay"] = wd
        return float(first)


def restore(run: RunDir, method, optimizer, data) -> int:
    """Load RUN_DIR/checkpoints/last.pt into the model and optimizer; returns its step (0 if none)."""
    started_on = (run.read_config().get("dataset") or {}).get("fingerprint")
    if started_on and started_on != data.key:
        raise TrainingError(f"--resume: the data of {data.source} (config {data.config}) changed since this run "
                            f"started (fingerprint {str(started_on)[:12]} -> {data.key[:12]}); start a new run")
    if not run.last_checkpoint.is_file():
        return 0
    state = load_checkpoint(run.last_checkpoint)
    try:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrainingError(f"{run.last_checkpoint}: does not fit this run's model or optimizer ({first})") from error
    for group in optimizer.param_groups:  # a CUDA-graph run saved these as tensors
        for key in ("lr", "weight_decay"):
            if isinstance(group[key], torch.Tensor):
                group[key] = float(group[key])
    set_rng_state(state["rng"])
    return step


def wrap_for_step(method, cfg: TrainConfig, ctx: distributed.DistContext):
    """What the step calls: the method itself, or its DDP wrapper, optionally compiled."""
    forward = method
    if ctx.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # broadcast_buffers=False: GlobalBatchNorm keeps statistics equal on every rank already,
        # and some methods keep per-rank buffers (SwAV's queue) that must not be overwritten.
        # find_unused_parameters: a method may leave a parameter out of a step (SwAV's frozen
        # prototypes in the first iterations).
        with warnings.catch_warnings():
            # recent torch deprecates broadcast_buffers in favour of forward_sync_buffers, which older
            # releases lack and which still syncs buffers at init: the portable flag stays
            warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
            forward = DistributedDataParallel(
                method, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                broadcast_buffers=False, find_unused_parameters=True)
    return torch.compile(forward) if cfg.compile else forward


class Trainer:
    def __init__(self, cfg: TrainConfig, ctx: distributed.DistContext, on_gradients=None):
        self.cfg, self.ctx, self.on_gradients = cfg, ctx, on_gradients
        self.device = ctx.device
        self.run = RunDir(cfg.out)
        self.main = ctx.is_main

    def setup(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        if self.main and not cfg.resume:
            self.run.check_new()
        self.precision, self.autocast_dtype = choose_precision(cfg, self.device)
        self.hp_overrides, self.hp = resolve_hyperparameters(cfg.method, cfg.hp, cfg.backbone)
        self.recipe = self.hp.recipe
        if cfg.cuda_graphs:
            self.check_cuda_graphs()
        self.method = build_method(cfg, self.hp, ctx)
        self.lr_scale = cfg.batch_size / 256  # linear scaling rule, as every method's paper
        self.peak_lr = self.recipe.base_lr * self.lr_scale
        try:
            self.optimizer = build_optimizer(self.method, self.recipe, self.peak_lr, self.lr_scale,
                                             capturable=cfg.cuda_graphs and self.device.type == "cuda")
        except ValueError as error:
            raise TrainingError(f"--hp: {error}") from error

        self.data, self.batches = self.load_data()
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.schedules = Schedules.of(self.recipe, self.optimizer, self.steps_per_epoch, cfg.epochs)
        self.total_steps = self.schedules.total_steps
        self.stop_step = min(cfg.steps or self.total_steps, self.total_steps)
        self.checkpoint_every = cfg.checkpoint_every or max(1, 10 * self.steps_per_epoch)
        self.start_step = restore(self.run, self.method, self.optimizer, self.data) if cfg.resume else 0
        self.last_checkpoint_step = self.start_step
        self.flush_times: list[tuple[int, float]] = []

        self.recipe_a, self.recipe_b = view_recipes(cfg.aug, cfg.method)
        step_class = GraphedStep if cfg.cuda_graphs else EagerStep  # GraphedStep: GPU only (checked above)
        self.step_fn = step_class(wrap_for_step(self.method, cfg, ctx), self.method, self.optimizer,
                                  self.autocast_dtype, self.device, clip_grad=self.recipe.clip_grad,
                                  on_gradients=self.on_gradients)
        self.augment = PairAugment(self.recipe_a, self.recipe_b, cfg.resolution, cfg.seed, self.device)
        if self.main:
            self.write_run_folder()

    def load_data(self):
        cfg, ctx = self.cfg, self.ctx
        options = dict(resolution=cfg.resolution, cache_dir=cfg.cache_dir, workers=cfg.workers,
                       hf_cache_dir=cfg.hf_cache_dir)
        if self.main:  # one process decodes; the others read its cache
            data = load_dataset(cfg.data, cfg.config, progress=cfg.progress, **options)
        distributed.barrier()
        if not self.main:
            data = load_dataset(cfg.data, cfg.config, progress=False, **options)
        self.shards = cfg.shards or ctx.world_size
        return data, PairBatches(data, cfg.batch_size, cfg.seed, self.device, shards=self.shards,
                                 rank=ctx.rank, world_size=ctx.world_size)

    def write_run_folder(self) -> None:
        """config.json (new runs), env.json, metrics.jsonl cut back to the checkpoint: the first writes."""
        if not self.cfg.resume or not self.run.config_path.exists():
            self.run.prepare_new()
            self.saved_config = self.resolved_config()
            self.run.write_config(self.saved_config)
        else:
            self.saved_config = self.run.read_config()
        self.run.write_env(device_name(self.device), self.ctx.world_size)
        self.run.truncate_metrics(self.start_step)
        self.metrics = MetricsLog(self.run, self.start_step)

    def check_cuda_graphs(self) -> None:
        module = method_module(self.cfg.method)
        if self.device.type != "cuda" or self.ctx.world_size > 1:
            raise TrainingError("--cuda-graphs: needs a single CUDA process (run without it on CPU or under torchrun)")
        if not getattr(module.Method, "capturable", False):
            raise TrainingError(f"--cuda-graphs: method {self.cfg.method} does not declare `capturable = True` "
                                "(its forward syncs with the host or keeps Python state); run without it")
        if self.recipe.weight_decay_end is not None and self.recipe.optimizer == "adamw":
            raise TrainingError("--cuda-graphs: AdamW with a weight-decay schedule cannot be captured; run without it")
        if self.on_gradients is not None:
            raise TrainingError("--cuda-graphs: gradients cannot be inspected inside a captured step")

    def resolved_config(self) -> dict:
        cfg, s = self.cfg, self.schedules
        fields = {k: v for k, v in cfg.to_json().items()
                  if k not in ("backbone", "stem", "hp", "resume", "out", "progress", "workers")}
        return json_ready({
            **fields,
            "format": CONFIG_FORMAT,
            "backbone": {"name": cfg.backbone, "stem": cfg.stem, "image_size": cfg.resolution},
            "hyperparameters": flat_fields(self.hp),
            "hp_overrides": self.hp_overrides,
            "augment": {"preset": cfg.aug, "view_a": dataclasses.asdict(self.recipe_a),
                        "view_b": dataclasses.asdict(self.recipe_b)},
            "dataset": self.data.summary(),
            "schedule": {"steps_per_epoch": s.steps_per_epoch, "total_steps": s.total_steps,
                         "warmup_steps": s.warmup_steps, "peak_lr": self.peak_lr, "lr_scale": self.lr_scale,
                         "checkpoint_every": self.checkpoint_every},
            "precision": self.precision,
            "world_size": self.ctx.world_size,
            "shards": self.shards,
        })

    # ----- per step ----------------------------------------------------------------------------
    def flush(self, pending: list) -> None:
        """Read the queued losses back, check them, log them."""
        if not pending:
            return
        values = torch.stack([loss for _, _, _, _, loss in pending]).float()
        if self.ctx.world_size > 1:
            distributed.all_reduce_mean_(values)
        values = values.tolist()  # waits for the device: every queued step has finished
        self.flush_times.append((pending[-1][0], time.perf_counter()))  # (steps done, time): for benchmarks
        for (step, epoch, lr, seconds, _), value in zip(pending, values):
            if not math.isfinite(value):
                checkpoint = (f"step {self.last_checkpoint_step} ({self.run.last_checkpoint})"
                              if self.last_checkpoint_step else "none written yet")
                raise NonFiniteLoss(f"loss is {value} at step {step} (epoch {epoch}) of {self.run.path}: training "
                                    f"stopped. Last checkpoint: {checkpoint}. Lower the learning rate "
                                    f"(--hp base_lr=...) or check the data.")
            if self.main:
                self.metrics.log({"step": step, "epoch": epoch, "loss": value, "lr": lr, "seconds": seconds})
        if self.main:
            self.metrics.flush()
        self.last_loss = values[-1]
        pending.clear()

    def save(self, step: int) -> None:
        if self.main:
            payload = {
                "format": CONFIG_FORMAT, "step": step, "epoch": step // self.steps_per_epoch,
                "total_steps": self.total_steps, "model": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": rng_state(), "config": self.saved_config,
                "eval_backbone": self.method.eval_backbone().state_dict(),
            }
            save_checkpoint(self.run.last_checkpoint, payload, previous_step=self.last_checkpoint_step)
        self.last_checkpoint_step = step

    def save_epoch(self, step: int) -> None:
        if self.main:
            epoch = step // self.steps_per_epoch
            save_checkpoint(self.run.checkpoints / f"epoch-{epoch:04d}.pt",
                            {"format": CONFIG_FORMAT, "step": step, "epoch": epoch, "config": self.saved_config,
                             "eval_backbone": self.method.eval_backbone().state_dict()})

    def run_steps(self) -> dict:
        cfg = self.cfg
        self.last_loss = None
        if self.start_step >= self.stop_step:  # resumed a finished run: nothing to do
            if self.main:
                self.metrics.close()
            return self.summary(self.start_step, 0.0)
        bar = progress(self.stop_step, f"{cfg.method} {cfg.config}", "step", enabled=self.main and cfg.progress,
                       initial=self.start_step)
        pending: list = []
        started = time.perf_counter()
        self.method.train()
        failed = True
        try:
            for step in range(self.start_step, self.stop_step):
                epoch = step // self.steps_per_epoch
                lr = self.schedules.apply(self.optimizer, step)
                view_a, view_b = self.augment(self.batches.batch(step), step)
                loss = self.step_fn(view_a, view_b, step)
                self.method.update_targets((step + 1) / self.total_steps)
                done = step + 1
                pending.append((done, epoch, lr, round(time.perf_counter() - started, 3), loss))
                bar.update(1)
                at_checkpoint = done % self.checkpoint_every == 0 or done == self.stop_step
                at_kept_epoch = done % self.steps_per_epoch == 0 and done // self.steps_per_epoch in cfg.keep_epochs
                if len(pending) >= cfg.log_every or at_checkpoint or at_kept_epoch:
                    self.flush(pending)  # never checkpoint weights that a non-finite loss produced
                    bar.set_postfix(loss=f"{self.last_loss:.4f}", lr=f"{lr:.3g}", refresh=False)
                if at_checkpoint:
                    self.save(done)
                if at_kept_epoch:
                    self.save_epoch(done)
            failed = False
        finally:
            bar.close()
            if self.main:
                self.metrics.close(quiet=failed)  # a failure already on its way is the one reported
        elapsed = time.perf_counter() - started
        return self.summary(self.stop_step, elapsed)

    def summary(self, step: int, elapsed: float) -> dict:
        steps_run = step - self.start_step
        return {"run_dir": str(self.run.path), "step": step, "total_steps": self.total_steps,
                "steps_run": steps_run, "seconds": round(elapsed, 2), "loss": self.last_loss,
                "pairs_per_s": round(steps_run * self.cfg.batch_size / elapsed, 1) if elapsed > 0 else None,
                "device": device_name(self.device), "world_size": self.ctx.world_size}


def one_writer_of(run_dir: str | Path):
    """The run folder's lock, held by the main process (rank 0 under torchrun) only."""
    if int(os.environ.get("RANK", "0")) != 0:
        return nullcontext()
    return one_writer(lock_inside(run_dir), run_dir, "run folder")


def train(cfg: TrainConfig, on_gradients=None) -> dict:
    """Run (or, with cfg.resume, continue) a training run; returns a summary dict.

    `on_gradients(step, method)`, if given, is called after each backward (eager steps only): the
    DDP test reads gradients through it."""
    RunDir(cfg.out).check_is_folder()
    if cfg.resume:
        cfg = resumed(cfg)
    cfg.check()
    with one_writer_of(RunDir(cfg.out).path):
        try:
            ctx = distributed.setup(cfg.device)
        except ValueError as error:
            raise TrainingError(f"--device {cfg.device}: {error}") from error
        try:
            trainer = Trainer(cfg, ctx, on_gradients)
            trainer.setup()
            return trainer.run_steps()
        finally:
            distributed.teardown(ctx)
