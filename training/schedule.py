"""Learning-rate and weight-decay schedules: linear warmup, then cosine decay (Loshchilov & Hutter
2017), the schedule of SimCLR, BYOL, DINO, VICReg, Barlow Twins and SwAV; a function of the step
alone, so a resumed run lands on exactly the value the uninterrupted run had."""
from __future__ import annotations

import math
from dataclasses import dataclass


def cosine(start: float, end: float, progress: float) -> float:
    """From `start` at progress 0 to `end` at progress 1 along half a cosine."""
    progress = min(max(progress, 0.0), 1.0)
    return end + (start - end) * (1.0 + math.cos(math.pi * progress)) / 2.0


@dataclass(frozen=True)
class WarmupCosine:
    """lr(step) for step = 0 .. total_steps - 1 (the step about to be taken).

    Warmup rises linearly from peak/warmup_steps to the peak (SimCLR's `learning_rate_schedule`),
    then the cosine falls from the peak to `final` at the last step."""

    peak: float
    total_steps: int
    warmup_steps: int = 0
    final: float = 0.0

    def __post_init__(self):
        if self.total_steps < 1 or not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"schedule: warmup_steps={self.warmup_steps} total_steps={self.total_steps}")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        progress = (step - self.warmup_steps) / max(decay_steps - 1, 1)
        return cosine(self.peak, self.final, progress)
