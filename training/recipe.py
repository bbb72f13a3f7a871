"""The optimizer and schedule recipe every method's `Hyperparameters` holds, and the range checks of
every hyperparameter.

A method declares its published recipe as `recipe: Recipe = Recipe(optimizer=..., base_lr=...)`: a
misspelt keyword is a TypeError when the method's module is imported, and the training loop reads
`hp.recipe.min_lr` (never a `getattr` with a default that would hide a typo). The method's own
values (temperatures, widths, momenta) sit beside it in its `Hyperparameters` and are read as
`hp.temperature`.

On the command line and in RUN_DIR/config.json both kinds are one flat namespace (`--hp base_lr=0.1`,
`--hp temperature=0.2`): `flat_fields`, `field_types` and `with_overrides` translate.

Every field is range-checked when a `Hyperparameters` or `Recipe` is made (`__post_init__`, with the
`require_*` helpers below): a bad value is refused up front with a message naming the field, before
any data is decoded or any network built. NaN and infinities are refused everywhere.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

OPTIMIZERS = ("lars", "sgd", "adamw")
# Upper bounds that keep a typo from allocating terabytes: the widest published head is DINO's
# 65,536-way output, the longest queue MoCo's 65,536 keys.
MAX_WIDTH = 1 << 17
MAX_QUEUE = 1 << 20


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _refuse(name: str, rule: str, value) -> None:
    raise ValueError(f"{name}: must be {rule}, got {value!r}")


def require_positive(owner, *names: str) -> None:
    """A finite number > 0 (temperatures, learning rates, epsilons)."""
    for name in names:
        value = getattr(owner, name)
        if not (_is_number(value) and value > 0):
            _refuse(name, "a number > 0", value)


def require_non_negative(owner, *names: str, optional: bool = False) -> None:
    """A finite number >= 0 (loss coefficients, weight decays); None too where `optional`."""
    for name in names:
        value = getattr(owner, name)
        if optional and value is None:
            continue
        if not (_is_number(value) and value >= 0):
            _refuse(name, "a number >= 0" + (" (or none)" if optional else ""), value)


def require_fraction(owner, *names: str, below_one: bool = False) -> None:
    """A number in [0, 1] (momenta, fractions of training); [0, 1) where `below_one`."""
    for name in names:
        value = getattr(owner, name)
        if not (_is_number(value) and 0 <= value and (value < 1 if below_one else value <= 1)):
            _refuse(name, "a number in [0, 1)" if below_one else "a number in [0, 1]", value)


def require_count(owner, *names: str, minimum: int = 1, maximum: int = MAX_WIDTH, optional: bool = False) -> None:
    """An integer in [minimum, maximum] (widths, iterations, queue lengths); None too where `optional`."""
    for name in names:
        value = getattr(owner, name)
        if optional and value is None:
            continue
        if not (isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum):
            _refuse(name, f"an integer from {minimum} to {maximum}", value)


def require_widths(owner, *names: str) -> None:
    """A non-empty tuple of layer widths (an MLP's output sizes)."""
    for name in names:
        value = getattr(owner, name)
        if not (isinstance(value, tuple) and value and all(
                isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= MAX_WIDTH for w in value)):
            _refuse(name, f"one or more integer widths from 1 to {MAX_WIDTH}", value)


def require_bool(owner, *names: str) -> None:
    for name in names:
        if not isinstance(getattr(owner, name), bool):
            _refuse(name, "true or false", getattr(owner, name))


@dataclass(frozen=True)
class Recipe:
    """How a method's paper optimized: the optimizer, its learning-rate and weight-decay schedule.

    The loop applies it (training/optim.py, training/schedule.py): linear warm-up over
    `warmup_epochs`, then a cosine from the peak lr (base_lr x batch/256) to `min_lr` if set, else to
    peak x `final_lr_ratio`."""

    optimizer: str  # "lars" | "sgd" | "adamw"
    base_lr: float  # at batch 256, scaled linearly with the batch (every method's paper)
    weight_decay: float
    warmup_epochs: int
    momentum: float = 0.9  # LARS and SGD
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW
    lars_eta: float = 0.001  # LARS trust coefficient
    # LARS only: tensors with ndim <= 1 (biases, norms) get neither weight decay nor the trust
    # ratio (AdamW always spares them, SGD never does).
    lars_exclude_bias_and_norm: bool = True
    final_lr_ratio: float = 0.0  # the cosine ends at peak x ratio ...
    min_lr: float | None = None  # ... or at this absolute value (wins over the ratio)
    base_lr_biases: float | None = None  # a separate base lr for ndim <= 1 tensors (Barlow Twins)
    constant_lr_modules: tuple[str, ...] = ()  # submodules kept at the peak lr (SimSiam's predictor)
    weight_decay_end: float | None = None  # cosine weight-decay schedule to this value (DINO)
    clip_grad: float = 0.0  # per-parameter gradient-norm clipping (DINO); 0 = off

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        require_positive(self, "base_lr", "lars_eta")
        require_non_negative(self, "weight_decay", "clip_grad")
        require_non_negative(self, "min_lr", "weight_decay_end", optional=True)
        if self.base_lr_biases is not None:
            require_positive(self, "base_lr_biases")
        require_count(self, "warmup_epochs", minimum=0, maximum=10_000)
        require_fraction(self, "momentum", below_one=True)
        require_fraction(self, "final_lr_ratio")
        require_bool(self, "lars_exclude_bias_and_norm")
        if not (isinstance(self.betas, tuple) and len(self.betas) == 2
                and all(_is_number(b) and 0 <= b < 1 for b in self.betas)):
            _refuse("betas", "two numbers in [0, 1)", self.betas)
        if not (isinstance(self.constant_lr_modules, tuple)
                and all(isinstance(m, str) and m.replace(".", "").replace("_", "").isalnum()
                        for m in self.constant_lr_modules)):
            _refuse("constant_lr_modules", "submodule names", self.constant_lr_modules)


RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))


def method_fields(hp_class) -> tuple[str, ...]:
    """The method's own fields (everything but its recipe)."""
    return tuple(f.name for f in dataclasses.fields(hp_class) if f.name != "recipe")


def field_types(hp_class) -> dict[str, object]:
    """Flat name -> type of every hyperparameter of a method, its recipe's included. A method field
    named like a recipe field would make `--hp NAME` ambiguous: refused here."""
    hints = typing.get_type_hints(hp_class)
    if hints.get("recipe") is not Recipe:
        raise TypeError(f"{hp_class.__module__}.{hp_class.__qualname__}: needs a field `recipe: Recipe`")
    clashes = sorted(set(method_fields(hp_class)) & set(RECIPE_FIELDS))
    if clashes:
        raise TypeError(f"{hp_class.__module__}: method fields {clashes} shadow recipe fields")
    recipe_hints = typing.get_type_hints(Recipe)
    return {**{name: hints[name] for name in method_fields(hp_class)},
            **{name: recipe_hints[name] for name in RECIPE_FIELDS}}


def flat_fields(hp) -> dict:
    """Every hyperparameter as one flat dict: what config.json records under "hyperparameters"."""
    return {**{name: getattr(hp, name) for name in method_fields(type(hp))},
            **dataclasses.asdict(hp.recipe)}


def with_overrides(hp, overrides: dict | None = None, **more):
    """A copy of `hp` with flat overrides applied: recipe fields go to its recipe. Range checks run
    again on the result (ValueError naming the field); an unknown name is a TypeError."""
    overrides = {**(overrides or {}), **more}
    types = field_types(type(hp))
    unknown = sorted(set(overrides) - set(types))
    if unknown:
        raise TypeError(f"not hyperparameters of this method: {', '.join(unknown)}")
    recipe_part = {k: v for k, v in overrides.items() if k in RECIPE_FIELDS}
    own_part = {k: v for k, v in overrides.items() if k not in RECIPE_FIELDS}
    recipe = dataclasses.replace(hp.recipe, **recipe_part) if recipe_part else hp.recipe
    return dataclasses.replace(hp, recipe=recipe, **own_part)
