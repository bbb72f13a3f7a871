"""Linear probe on frozen features (paper §4: backbone frozen, linear evaluation, top-1).

The classifier is multinomial logistic regression fitted to convergence by full-batch L-BFGS on
the device, with its L2 weight decay chosen on a held-out part of train; the chosen value is then
refitted on all of train and scored once on test. This is the protocol of CLIP's linear probes
(Radford et al. 2021, §3.2 and App. A.3: L-BFGS logistic regression, regularization swept on a
validation split) rather than SGD for a fixed number of epochs: it is deterministic, has no
learning rate to tune and, being a convex problem, gives the same answer as scikit-learn's
`LogisticRegression` (tests/training/test_eval_linear.py checks that).
Features are standardized with the training statistics first, which is what MAE's linear probe
does with its affine-free BatchNorm (He et al. 2022, App. A.2), so one decay grid fits every
backbone width.

Objective: mean cross-entropy + weight_decay / 2 * ||W||^2 (bias not decayed), i.e. scikit-learn's
C = 1 / (weight_decay * n).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from training.eval.errors import EvalError
from training.eval.features import Features

WEIGHT_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # the sweep, one fit each
HELD_OUT_FRACTION = 0.1  # of train, stratified by class, for choosing the weight decay
MAX_ITERATIONS = 1000  # L-BFGS iterations per fit; converged fits stop far earlier
GRADIENT_TOLERANCE = 1e-6  # stop when every gradient entry is below this
SEED = 0


@dataclass
class LinearClassifier:
    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    iterations: int

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.weight.T + self.bias).argmax(dim=1)


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float,
                            max_iterations: int = MAX_ITERATIONS,
                            tolerance: float = GRADIENT_TOLERANCE) -> LinearClassifier:
    """Minimize mean CE + wd/2 ||W||^2 over (W, b) by L-BFGS, starting from zero (convex: unique)."""
    weight = torch.zeros(num_classes, x.shape[1], device=x.device, dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1, max_iter=max_iterations, max_eval=max_iterations * 5 // 4,
        tolerance_grad=tolerance, tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    iterations = optimizer.state[weight].get("n_iter", 0)
    return LinearClassifier(weight.detach(), bias.detach(), int(iterations))


def stratified_held_out(y: np.ndarray, fraction: float, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, held-out indices): `fraction` of each class held out, at least one per class."""
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        if members.size < 2:
            raise EvalError(f"class {int(label)} has {members.size} training image(s); the sweep needs at least 2")
        count = max(1, int(round(fraction * members.size)))
        held.append(rng.choice(members, size=count, replace=False))
    held = np.sort(np.concatenate(held))
    fit = np.setdiff1d(np.arange(y.size), held)
    return fit, held


def standardize(train_x: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean = train_x.mean(dim=0, keepdim=True)
    std = train_x.std(dim=0, keepdim=True).clamp_min(1e-6)
    return [(t - mean) / std for t in (train_x, *others)]


def top1(classifier: LinearClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((classifier.predict(x) == y).float().mean())


def linear_probe(train: Features, test: Features, num_classes: int, device: torch.device,
                 weight_decays=WEIGHT_DECAYS, held_out_fraction: float = HELD_OUT_FRACTION,
                 max_iterations: int = MAX_ITERATIONS) -> dict:
    """Sweep the weight decay on held-out train, refit on all of train, report top-1 on test."""
    if not weight_decays:
        raise EvalError("weight decay sweep: give at least one value")
    dtype = torch.float32
    fit_idx, held_idx = stratified_held_out(train.y.numpy(), held_out_fraction)
    x_fit, x_held = standardize(train.x[fit_idx].to(device, dtype), train.x[held_idx].to(device, dtype))
    y_fit, y_held = train.y[fit_idx].to(device), train.y[held_idx].to(device)
    sweep = []
    for weight_decay in weight_decays:
        classifier = fit_logistic_regression(x_fit, y_fit, num_classes, weight_decay, max_iterations)
        sweep.append({"weight_decay": weight_decay, "held_out_top1": top1(classifier, x_held, y_held),
                      "iterations": classifier.iterations})
    # Best held-out accuracy; ties go to the stronger decay (the simpler model).
    best = max(sweep, key=lambda row: (row["held_out_top1"], row["weight_decay"]))
    x_train, x_test = standardize(train.x.to(device, dtype), test.x.to(device, dtype))
    classifier = fit_logistic_regression(x_train, train.y.to(device), num_classes, best["weight_decay"], max_iterations)
    return {
        "top1": top1(classifier, x_test, test.y.to(device)),
        "train_top1": top1(classifier, x_train, train.y.to(device)),
        "weight_decay": best["weight_decay"],
        "iterations": classifier.iterations,
        "sweep": sweep,
        "held_out_fraction": held_out_fraction,
        "protocol": "L-BFGS multinomial logistic regression on standardized frozen features, "
                    "weight decay swept on a stratified held-out part of train (CLIP App. A.3)",
    }
