"""The training loop: data on the device, per-sample augmentation, one step, schedules, logging,
checkpoints, and DistributedDataParallel under `torchrun`.

Per step: take this step's rows from the device cache, augment both views per sample, run the
step (eager, compiled, or replayed from a CUDA graph), update EMA targets, queue the loss on the
device. Every `log_every` steps (and before every checkpoint) the queued losses are read back in
one transfer, checked (a NaN or infinite loss stops the run with a message naming the step and the
last good checkpoint), written to metrics.jsonl and TensorBoard. Nothing in the step waits on the
host, so the GPU runs ahead of Python.

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

import torch

from training import distributed
from training.augment import PairAugment, view_recipes
from training.backbones import BackboneSpec, build_backbone
from training.checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from training.config import (RESUMABLE_CHANGES, TrainConfig, build_hyperparameters, json_ready, merge_for_resume,
                             parse_hp_overrides)
from training.data.batches import PairBatches
from training.data.cache import load_dataset
from training.errors import NonFiniteLoss, TrainingError
from training.methods import method_module
from training.optim import build_optimizer
from training.run_dir import MetricsLog, RunDir
from training.schedule import WarmupCosine, cosine
from training.step import EagerStep, GraphedStep

CONFIG_FORMAT = 1


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def fields_from_saved(saved: dict, where: str = "config.json") -> dict:
    """TrainConfig fields from a config.json written by this module."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    try:
        fields = {k: v for k, v in saved.items() if k in names and k not in ("backbone", "hp")}
        fields["backbone"] = saved["backbone"]["name"]
        fields["stem"] = saved["backbone"]["stem"]
        fields["hp"] = dict(saved.get("hp_overrides", {}))
        fields["keep_epochs"] = tuple(fields.get("keep_epochs", ()))
        missing = [k for k in ("data", "config", "method") if k not in fields]
        if missing:
            raise KeyError(missing[0])
    except (KeyError, TypeError, AttributeError) as error:
        raise TrainingError(f"{where}: missing or malformed entry {error}; not a config.json written by "
                            "`semantic-pairs train`") from error
    return fields


def config_for_resume(out: str, given: dict) -> TrainConfig:
    """The saved settings of RUN_DIR with the command line's allowed changes; other differences are
    refused (`given` holds only the options the user actually passed)."""
    run = RunDir(out)
    saved = fields_from_saved(run.read_config(), str(run.config_path))
    given = dict(given)
    if given.get("hp"):
        method = given.get("method") or saved["method"]
        given["hp"] = parse_hp_overrides(method_module(method).Hyperparameters, given["hp"])
    merged = merge_for_resume(saved, given, str(run.path))
    # a resumed run goes to the end of its schedule unless told where to stop (--steps of the first
    # start was a smoke-run limit, not part of the schedule)
    merged.update(resume=True, out=out, steps=given.get("steps"))
    return TrainConfig(**merged)


class Trainer:
    def __init__(self, cfg: TrainConfig, ctx: distributed.DistContext, on_gradients=None):
        self.cfg, self.ctx, self.on_gradients = cfg, ctx, on_gradients
        self.device = ctx.device
        self.run = RunDir(cfg.out)
        self.main = ctx.is_main

    # ----- setup -------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        if self.device.type == "cuda":  # GPU-only: fixed shapes, so let cuDNN pick its fastest kernels
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        precision = cfg.precision if cfg.precision != "auto" else ("bf16" if self.device.type == "cuda" else "fp32")
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        self.precision = precision

        module = method_module(cfg.method)  # options first: refuse bad ones before a long decode
        self.hp_overrides = parse_hp_overrides(module.Hyperparameters, cfg.hp)
        self.hp = build_hyperparameters(module, self.hp_overrides, backbone=cfg.backbone)
        if cfg.cuda_graphs:
            self.check_cuda_graphs(module)
        if self.main and not cfg.resume:
            self.run.prepare_new()
        distributed.barrier()
        data_options = dict(resolution=cfg.resolution, cache_dir=cfg.cache_dir, workers=cfg.workers,
                            hf_cache_dir=cfg.hf_cache_dir)
        if self.main:  # one process decodes; the others read its cache
            self.data = load_dataset(cfg.data, cfg.config, progress=cfg.progress, **data_options)
        distributed.barrier()
        if not self.main:
            self.data = load_dataset(cfg.data, cfg.config, progress=False, **data_options)
        self.shards = cfg.shards or ctx.world_size
        self.batches = PairBatches(self.data, cfg.batch_size, cfg.seed, self.device, shards=self.shards,
                                   rank=ctx.rank, world_size=ctx.world_size)
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.stop_step = min(cfg.steps or self.total_steps, self.total_steps)
        self.checkpoint_every = cfg.checkpoint_every or max(1, 10 * self.steps_per_epoch)

        self.spec = BackboneSpec(cfg.backbone, cfg.stem, cfg.resolution)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        try:
            backbone, width = build_backbone(self.spec)
            self.method = module.Method(backbone, width, self.hp)
        except ValueError as error:
            raise TrainingError(f"--method {cfg.method} / --backbone {cfg.backbone}: {error}") from error
        self.method.to(self.device, memory_format=torch.channels_last)
        if ctx.world_size > 1:
            distributed.convert_to_global_batchnorm(self.method)

        self.lr_scale = cfg.batch_size / 256  # linear scaling rule, as every method's paper
        self.peak_lr = self.hp.base_lr * self.lr_scale
        use_graphs = cfg.cuda_graphs
        try:
            self.optimizer = build_optimizer(self.method, self.hp, self.peak_lr, self.lr_scale,
                                             capturable=use_graphs and self.device.type == "cuda")
        except ValueError as error:
            raise TrainingError(f"--hp: {error}") from error
        self.warmup_steps = min(round(self.hp.warmup_epochs * self.steps_per_epoch), self.total_steps)
        min_lr = getattr(self.hp, "min_lr", None)
        ratio = getattr(self.hp, "final_lr_ratio", 0.0) or 0.0
        self.schedules = [None if g["constant_lr"] else
                          WarmupCosine(g["peak_lr"], self.total_steps, self.warmup_steps,
                                       min_lr if min_lr is not None else g["peak_lr"] * ratio)
                          for g in self.optimizer.param_groups]
        self.weight_decay_end = getattr(self.hp, "weight_decay_end", None)
        self.recipe_a, self.recipe_b = view_recipes(cfg.aug, cfg.method)

        self.flush_times: list[tuple[int, float]] = []
        self.start_step = 0
        if cfg.resume and self.run.config_path.is_file():
            started_on = self.run.read_config().get("dataset", {}).get("fingerprint")
            if started_on and started_on != self.data.key:
                raise TrainingError(f"--resume: the data of {cfg.data} (config {cfg.config}) changed since this run "
                                    f"started (fingerprint {started_on[:12]} -> {self.data.key[:12]}); start a new run")
        if cfg.resume and self.run.last_checkpoint.is_file():
            state = load_checkpoint(self.run.last_checkpoint)
            try:
                self.method.load_state_dict(state["model"])
                self.optimizer.load_state_dict(state["optimizer"])
            except (KeyError, RuntimeError, ValueError) as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise TrainingError(f"{self.run.last_checkpoint}: does not fit this run's model or optimizer "
                                    f"({first})") from error
            for group in self.optimizer.param_groups:  # a CUDA-graph run saved these as tensors
                for key in ("lr", "weight_decay"):
                    if isinstance(group[key], torch.Tensor):
                        group[key] = float(group[key])
            set_rng_state(state["rng"])
            self.start_step = int(state["step"])
        self.last_checkpoint_step = self.start_step

        forward = self.method
        if ctx.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            # broadcast_buffers=False: GlobalBatchNorm keeps statistics equal on every rank already,
            # and some methods keep per-rank buffers (SwAV's queue) that must not be overwritten.
            # find_unused_parameters: a method may leave a parameter out of a step (SwAV's frozen
            # prototypes in the first iterations).
            with warnings.catch_warnings():
                # torch >= 2.12 deprecates broadcast_buffers for forward_sync_buffers, which torch 2.11
                # (the GPU machines) lacks and which still syncs buffers at init: keep the old flag
                warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
                forward = DistributedDataParallel(
                    self.method, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                    broadcast_buffers=False, find_unused_parameters=True)
        if cfg.compile:
            forward = torch.compile(forward)
        step_class = GraphedStep if use_graphs else EagerStep  # GraphedStep: GPU only (checked above)
        self.step_fn = step_class(forward, self.method, self.optimizer, self.autocast_dtype, self.device,
                                  clip_grad=float(getattr(self.hp, "clip_grad", 0.0) or 0.0),
                                  on_gradients=self.on_gradients)
        self.augment = PairAugment(self.recipe_a, self.recipe_b, cfg.resolution, cfg.seed, self.device)

        if self.main:
            if not cfg.resume or not self.run.config_path.exists():
                self.saved_config = self.resolved_config()
                self.run.write_config(self.saved_config)
            else:
                self.saved_config = self.run.read_config()
            self.run.write_env(device_name(self.device), ctx.world_size)
            self.run.truncate_metrics(self.start_step)
            self.metrics = MetricsLog(self.run, self.start_step)

    def check_cuda_graphs(self, module) -> None:
        if self.device.type != "cuda" or self.ctx.world_size > 1:
            raise TrainingError("--cuda-graphs: needs a single CUDA process (run without it on CPU or under torchrun)")
        if not getattr(module.Method, "capturable", False):
            raise TrainingError(f"--cuda-graphs: method {self.cfg.method} does not declare `capturable = True` "
                                "(its forward syncs with the host or keeps Python state); run without it")
        if getattr(self.hp, "weight_decay_end", None) is not None and self.hp.optimizer == "adamw":
            raise TrainingError("--cuda-graphs: AdamW with a weight-decay schedule cannot be captured; run without it")
        if self.on_gradients is not None:
            raise TrainingError("--cuda-graphs: gradients cannot be inspected inside a captured step")

    def resolved_config(self) -> dict:
        cfg = self.cfg
        fields = {k: v for k, v in cfg.to_json().items()
                  if k not in ("backbone", "stem", "hp", "resume", "out", "progress", "workers")}
        return json_ready({
            **fields,
            "format": CONFIG_FORMAT,
            "backbone": {"name": cfg.backbone, "stem": cfg.stem, "image_size": cfg.resolution},
            "hyperparameters": dataclasses.asdict(self.hp),
            "hp_overrides": self.hp_overrides,
            "augment": {"preset": cfg.aug, "view_a": dataclasses.asdict(self.recipe_a),
                        "view_b": dataclasses.asdict(self.recipe_b)},
            "dataset": self.data.summary(),
            "schedule": {"steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
                         "warmup_steps": self.warmup_steps, "peak_lr": self.peak_lr, "lr_scale": self.lr_scale,
                         "checkpoint_every": self.checkpoint_every},
            "precision": self.precision,
            "world_size": self.ctx.world_size,
            "shards": self.shards,
        })

    # ----- per step ----------------------------------------------------------------------------
    def set_hyperparameters(self, step: int) -> float:
        """Learning rate (and weight decay) of every group for `step`; returns the first group's lr."""
        wd_factor = 1.0
        if self.weight_decay_end is not None and self.hp.weight_decay:
            wd_now = cosine(self.hp.weight_decay, self.weight_decay_end, step / max(self.total_steps - 1, 1))
            wd_factor = wd_now / self.hp.weight_decay
        first = None
        for group, schedule in zip(self.optimizer.param_groups, self.schedules):
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
            save_checkpoint(self.run.last_checkpoint, payload)
        self.last_checkpoint_step = step

    def save_epoch(self, step: int) -> None:
        if self.main:
            epoch = step // self.steps_per_epoch
            save_checkpoint(self.run.checkpoints / f"epoch-{epoch:04d}.pt",
                            {"format": CONFIG_FORMAT, "step": step, "epoch": epoch, "config": self.saved_config,
                             "eval_backbone": self.method.eval_backbone().state_dict()})

    def run_steps(self) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        self.last_loss = None
        if self.start_step >= self.stop_step:  # resumed a finished run: nothing to do
            if self.main:
                self.metrics.close()
            return self.summary(self.start_step, 0.0)
        bar = tqdm(total=self.stop_step, initial=self.start_step, unit="step", mininterval=1.0,
                   disable=not (self.main and cfg.progress), desc=f"{cfg.method} {cfg.config}")
        pending: list = []
        started = time.perf_counter()
        self.method.train()
        try:
            for step in range(self.start_step, self.stop_step):
                epoch = step // self.steps_per_epoch
                lr = self.set_hyperparameters(step)
                batch = self.batches.batch(step)
                view_a, view_b = self.augment(batch.first, batch.second, step, batch.shard_sizes)
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
        finally:
            bar.close()
            if self.main:
                self.metrics.close()
        elapsed = time.perf_counter() - started
        return self.summary(self.stop_step, elapsed)

    def summary(self, step: int, elapsed: float) -> dict:
        steps_run = step - self.start_step
        return {"run_dir": str(self.run.path), "step": step, "total_steps": self.total_steps,
                "steps_run": steps_run, "seconds": round(elapsed, 2), "loss": self.last_loss,
                "pairs_per_s": round(steps_run * self.cfg.batch_size / elapsed, 1) if elapsed > 0 else None,
                "device": device_name(self.device), "world_size": self.ctx.world_size}


def train(cfg: TrainConfig, on_gradients=None) -> dict:
    """Run (or, with cfg.resume, continue) a training run; returns a summary dict.

    `on_gradients(step, method)`, if given, is called after each backward (eager steps only): the
    DDP test reads gradients through it."""
    if cfg.resume:
        run = RunDir(cfg.out)
        saved = fields_from_saved(run.read_config(), str(run.config_path))
        cfg = TrainConfig(**{**saved, **{k: getattr(cfg, k) for k in RESUMABLE_CHANGES}})
    cfg.check()
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
