"""One optimization step: forward both views, backward, (clip,) optimizer step.

`EagerStep` runs everywhere. `GraphedStep` (GPU only) captures forward + backward + optimizer step
in one CUDA graph and replays it: one launch per step instead of several hundred, which matters
because a ResNet-50 step on 64x64 inputs is bound by kernel launches, not arithmetic
(docs/ARCHITECTURE.md, "Training speed"; benchmarks/train_throughput.py measures it). It follows the
"whole network capture" recipe of the PyTorch CUDA-graphs docs: static input buffers, warm-up on a
side stream, learning rate and weight decay as device tensors updated in place, autocast with its
weight cache off. The warm-up iterations would train the model, so every parameter, buffer and
optimizer state is restored afterwards: the first replayed step is the run's true first step.
Only methods declaring `capturable = True` (no host sync, no Python-side state in forward) are
captured; EMA target updates run eagerly after each step (one fused kernel per network).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn


def clip_per_parameter_(parameters: list[nn.Parameter], max_norm: float) -> None:
    """DINO's `utils.clip_gradients`: each parameter's gradient scaled to norm <= max_norm.
    Written with foreach ops and no host sync, so it can be captured in a CUDA graph."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norms = torch.stack(torch._foreach_norm(grads))
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, list(scale.unbind()))


class EagerStep:
    def __init__(self, forward: Callable, method: nn.Module, optimizer: torch.optim.Optimizer,
                 autocast_dtype: torch.dtype | None, device: torch.device, clip_grad: float = 0.0,
                 on_gradients: Callable | None = None):
        self.forward, self.method, self.optimizer = forward, method, optimizer
        self.device, self.autocast_dtype, self.clip_grad = device, autocast_dtype, clip_grad
        self.on_gradients = on_gradients
        self.parameters = [p for p in method.parameters() if p.requires_grad]

    def autocast(self, cache_enabled: bool = True):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=cache_enabled)

    def body(self, view_a: torch.Tensor, view_b: torch.Tensor, step: int | None = None,
             cache_enabled: bool = True) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast(cache_enabled):
            loss = self.forward(view_a, view_b)
        loss.backward()
        if self.on_gradients is not None and step is not None:
            self.on_gradients(step, self.method)
        if self.clip_grad:
            clip_per_parameter_(self.parameters, self.clip_grad)
        self.optimizer.step()
        return loss.detach()

    def __call__(self, view_a: torch.Tensor, view_b: torch.Tensor, step: int) -> torch.Tensor:
        return self.body(view_a, view_b, step)


class GraphedStep(EagerStep):
    """GPU only. Capture happens on the first call, with that step's real batch."""

    WARMUP = 3

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.graph = None

    def _snapshot(self) -> tuple[dict, dict]:
        model = {k: v.detach().clone() for k, v in self.method.state_dict().items()}
        optim = {id(p): {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
                 for p, state in self.optimizer.state.items()}
        return model, optim

    @torch.no_grad()
    def _restore(self, model: dict, optim: dict) -> None:
        for key, value in self.method.state_dict().items():
            value.copy_(model[key])
        for p, state in self.optimizer.state.items():
            saved = optim.get(id(p), {})
            for key, value in state.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if key in saved:
                    value.copy_(saved[key])
                else:
                    value.zero_()  # state first made during warm-up: a fresh state is zeros

    def _capture(self, view_a: torch.Tensor, view_b: torch.Tensor) -> None:
        self.static_a, self.static_b = view_a.clone(), view_b.clone()
        from training.optim import LARS

        for group in self.optimizer.param_groups:  # schedules write into these tensors from now on
            group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
            if isinstance(self.optimizer, LARS) and group["weight_decay"] != 0.0:
                group["weight_decay"] = torch.tensor(float(group["weight_decay"]), device=self.device)
        model, optim = self._snapshot()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                self.body(self.static_a, self.static_b, cache_enabled=False)
        torch.cuda.current_stream().wait_stream(side)
        # state created lazily during warm-up (Adam moments) exists now: snapshot keys stay valid
        self.graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.static_loss = self.body(self.static_a, self.static_b, cache_enabled=False)
        self._restore(model, optim)

    def __call__(self, view_a: torch.Tensor, view_b: torch.Tensor, step: int) -> torch.Tensor:
        if self.graph is None:
            self._capture(view_a, view_b)
        self.static_a.copy_(view_a)
        self.static_b.copy_(view_b)
        self.graph.replay()
        return self.static_loss.clone()
