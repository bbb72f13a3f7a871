"""The settings of one training run, checked up front with one-line messages naming the option.

Every value a run depends on lands in RUN_DIR/config.json; a resumed run reads them back from there
and refuses a command line that would change them (except where to stop and how to report).
A value that is wrong in config.json is reported as a problem of that file and field; a value
given on the command line, as a problem of that option.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pair_manifest.protocol import (AUGMENTATIONS, BACKBONE, BACKBONES, BATCH_SIZE, EPOCHS, METHODS, RESOLUTION,
                                    STEMS)
from training.errors import TrainingError

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cuda", "cpu")
CONFIG_FORMAT = 1  # of config.json and checkpoints; bump when their meaning changes
# Options a resumed run may change: they decide when to stop, where and how fast it runs, and how it
# reports; not what is computed.
RESUMABLE_CHANGES = ("steps", "progress", "workers", "cache_dir", "hf_cache_dir", "log_every", "resume", "out",
                     "device", "compile", "cuda_graphs")
# What `train` writes into config.json only to record it (derived from the settings): never read back.
RECORDED_ONLY = ("format", "hyperparameters", "hp_overrides", "augment", "dataset", "schedule", "world_size",
                 "backbone")


@dataclass
class TrainConfig:
    data: str
    config: str
    method: str
    out: str
    epochs: int = EPOCHS  # paper §4: 200 (also 400, 800 for Table 1; DINO ViT 300)
    batch_size: int = BATCH_SIZE  # paper §4
    resolution: int = RESOLUTION  # paper §4: 64x64 inputs
    aug: str = "paper"
    backbone: str = BACKBONE
    stem: str = "imagenet"  # see training/backbones.py for why the reproduction keeps the ImageNet stem
    steps: int | None = None  # stop after this many steps (smoke runs); the schedule stays --epochs'
    seed: int = 0
    hp: dict | list = field(default_factory=dict)  # overrides of the method's hyperparameters
    device: str = "auto"
    precision: str = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False  # torch.compile the forward/backward (GPU or CPU)
    cuda_graphs: bool = False  # capture forward+backward+optimizer in one CUDA graph (GPU only)
    checkpoint_every: int | None = None  # steps; default: every 10 epochs
    keep_epochs: tuple[int, ...] = ()  # also keep checkpoints/epoch-NNNN.pt (eval backbone) at these epochs
    shards: int | None = None  # data shards; default: the number of processes (see data/batches.py)
    log_every: int = 50  # loss values are read back from the device every this many steps
    cache_dir: str | None = None
    hf_cache_dir: str | None = None
    workers: int | None = None  # decode processes; default: all cores
    progress: bool = True
    resume: bool = False

    def check(self, label: Callable[[str], str] | None = None) -> "TrainConfig":
        """Refuse a wrong type or value, naming it with `label(field)` (default: the option)."""
        label = label or option_label
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            _check_type(label(f.name), getattr(self, f.name), hints[f.name])

        def need(condition: bool, name: str, message: str) -> None:
            if not condition:
                raise TrainingError(f"{label(name)} {_shown(getattr(self, name))}: {message}")

        for name, choices in (("method", METHODS), ("aug", AUGMENTATIONS), ("backbone", BACKBONES),
                              ("stem", STEMS), ("precision", PRECISIONS), ("device", DEVICES)):
            need(getattr(self, name) in choices, name, f"not one of {', '.join(choices)}")
        for name in ("epochs", "batch_size", "resolution", "log_every"):
            need(getattr(self, name) >= 1, name, "must be a positive integer")
        for name in ("steps", "checkpoint_every", "shards", "workers"):
            need(getattr(self, name) is None or getattr(self, name) >= 1, name, "must be a positive integer")
        need(self.batch_size >= 2, "batch_size", "must be at least 2")
        need(8 <= self.resolution <= 1024, "resolution", "must be between 8 and 1024")
        if self.backbone.startswith("vit"):
            need(self.resolution % 8 == 0, "resolution", "a ViT with 8x8 patches needs a multiple of 8")
        need(all(1 <= e <= self.epochs for e in self.keep_epochs), "keep_epochs",
             f"each must be an epoch between 1 and {self.epochs}")
        need(bool(self.out), "out", "missing")
        need(bool(self.data), "data", "missing")
        from training.data.source import config_problem

        problem = config_problem(self.config)
        need(problem is None, "config", problem or "")
        resolve_hyperparameters(self.method, self.hp, self.backbone, label("hp"))
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def option_label(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def file_label(path: str | Path) -> Callable[[str], str]:
    return lambda name: f"{path}: field '{name}'"


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _check_type(label: str, value, kind) -> None:
    """`value` must be of the annotated type: int never a bool, a tuple of ints, None only where allowed."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if any(_is_type(value, option) for option in args):
            return
    elif _is_type(value, kind):
        return
    raise TrainingError(f"{label}: expected {_type_name(kind)}, found {json.dumps(value, default=str)[:80]}")


def _is_type(value, kind) -> bool:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if kind is dict:
        return isinstance(value, dict)
    if kind is list:
        return isinstance(value, list)
    if origin is tuple:
        return isinstance(value, tuple) and all(_is_type(v, args[0]) for v in value)
    return False


def _type_name(kind) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        return f"a list of {_type_name(args[0])}s"
    return {int: "an integer", str: "a string", bool: "true or false", dict: "an object", list: "a list",
            type(None): "null"}.get(kind, str(kind))


# ----- hyperparameters ---------------------------------------------------------------------------
def _convert(value, kind, label: str, from_text: bool):
    """A hyperparameter from the command line (`from_text`: a string, parsed) or from a dict such as
    config.json's (a JSON value, which must already have the field's type) as the field's type."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    from_text = from_text and isinstance(value, str)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or (from_text and value.lower() in ("none", "null")):
            return None
        return _convert(value, next(a for a in args if a is not type(None)), label, from_text)
    if origin is tuple:
        if from_text:
            items = [t.strip() for t in value.split(",") if t.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise TrainingError(f"{label}: expected a list, found {value!r}")
        element_types = [args[0]] * len(items) if (len(args) == 2 and args[1] is Ellipsis) else list(args)
        if len(element_types) != len(items):
            raise TrainingError(f"{label}: expected {len(args)} comma-separated values")
        return tuple(_convert(item, t, label, from_text) for item, t in zip(items, element_types))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if from_text and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise TrainingError(f"{label}: not a boolean (true/false)")
    if kind is str:
        if isinstance(value, str):
            return value
        raise TrainingError(f"{label}: expected a string, found {value!r}")
    if kind in (int, float):
        number = value
        if from_text:
            try:
                number = int(value) if kind is int else float(value)
            except ValueError:
                number = None
        ok = isinstance(number, (int, float)) and not isinstance(number, bool)
        if kind is int:
            ok = ok and isinstance(number, int)
        if not ok:
            found = "" if from_text else f", found {json.dumps(value, default=str)[:40]}"
            raise TrainingError(f"{label}: not {'an integer' if kind is int else 'a number'}{found}")
        if not math.isfinite(number):
            raise TrainingError(f"{label}: not a finite number")
        return float(number) if kind is float else number
    raise TrainingError(f"{label}: fields of type {kind} cannot be set here")


def parse_hp_overrides(hyperparameters_cls, overrides, label: str = "--hp") -> dict:
    """`["temperature=0.2", ...]` (the command line, parsed) or a dict of values that already have
    their fields' types (config.json's `hp_overrides`, a caller's) -> {field: typed value}."""
    from training.recipe import field_types

    kinds = field_types(hyperparameters_cls)
    if isinstance(overrides, dict):
        pairs = [(key, value, f"{label}: {key}") for key, value in overrides.items()]
    elif isinstance(overrides, list):
        pairs = []
        for item in overrides:
            if not isinstance(item, str) or "=" not in item:
                raise TrainingError(f"{label} {item}: expected KEY=VALUE")
            key, value = item.split("=", 1)
            pairs.append((key.strip(), value.strip(), f"{label} {key.strip()}={value.strip()}"))
    else:
        raise TrainingError(f"{label}: expected KEY=VALUE overrides, found {overrides!r}")
    typed = {}
    for key, value, where in pairs:
        if key not in kinds:
            raise TrainingError(f"{label} {key}: not a hyperparameter of this method (it has: {', '.join(kinds)})")
        typed[key] = _convert(value, kinds[key], where, from_text=not isinstance(overrides, dict))
    return typed


def build_hyperparameters(module, overrides: dict, *, backbone: str, label: str = "--hp"):
    """The method's frozen Hyperparameters for this backbone, with the overrides applied (its own
    range checks included). A method whose paper gives one recipe per architecture (DINO: ViT and
    ResNet) says which through `default_hyperparameters(backbone)`."""
    from training.recipe import with_overrides

    recipe = getattr(module, "default_hyperparameters", None)
    base = recipe(backbone) if recipe is not None else module.Hyperparameters()
    try:
        return with_overrides(base, overrides)
    except (ValueError, TypeError) as error:
        raise TrainingError(f"{label}: {error}") from error


def resolve_hyperparameters(method: str, overrides, backbone: str, label: str = "--hp") -> tuple[dict, object]:
    """(typed overrides, the method's Hyperparameters with them applied), every value checked."""
    from training.methods import method_module

    module = method_module(method)
    typed = parse_hp_overrides(module.Hyperparameters, overrides, label)
    return typed, build_hyperparameters(module, typed, backbone=backbone, label=label)


# ----- a run's config.json -----------------------------------------------------------------------
def json_ready(value):
    """Tuples -> lists, recursively (what json.dumps writes anyway), for comparisons with config.json."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def read_run_config(path: Path) -> dict:
    """config.json of a run as a dict, or a one-line refusal naming the file."""
    if not path.is_file():
        raise TrainingError(f"--resume: {path} does not exist; nothing to resume")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TrainingError(f"{path}: not valid JSON ({error})") from None
    except OSError as error:
        raise TrainingError(f"{path}: cannot be read ({error.strerror})") from None
    if not isinstance(saved, dict):
        raise TrainingError(f"{path}: expected a JSON object, found {type(saved).__name__}")
    return saved


def fields_from_saved(saved: dict, where: str | Path) -> dict:
    """TrainConfig fields from a config.json written by `train`, every one checked and named as a
    field of that file."""
    label = file_label(where)
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"backbone", "stem", "hp"}
    fields = {k: v for k, v in saved.items() if k in names}
    for required in ("data", "config", "method", "backbone"):
        if required not in saved:
            raise TrainingError(f"{label(required)}: missing; not a config.json written by `semantic-pairs train`")
    backbone = saved["backbone"]
    if not isinstance(backbone, dict) or not {"name", "stem"} <= set(backbone):
        raise TrainingError(f"{label('backbone')}: expected an object with name and stem, found "
                            f"{json.dumps(backbone, default=str)[:80]}")
    fields["backbone"], fields["stem"] = backbone["name"], backbone["stem"]
    fields["hp"] = saved.get("hp_overrides", {})
    _check_type(label("hp_overrides"), fields["hp"], dict)
    if isinstance(fields.get("keep_epochs"), list):
        fields["keep_epochs"] = tuple(fields["keep_epochs"])
    if "format" in saved and not (type(saved["format"]) is int and saved["format"] == CONFIG_FORMAT):
        raise TrainingError(f"{label('format')}: {saved['format']!r}; this version reads format {CONFIG_FORMAT}")
    for key in ("dataset", "schedule", "hyperparameters", "augment"):  # recorded for people, checked all the same
        if key in saved:
            _check_type(label(key), saved[key], dict)
    if "world_size" in saved:
        _check_type(label("world_size"), saved["world_size"], int)
    if "dataset" in saved and "fingerprint" in saved["dataset"]:
        _check_type(label("dataset.fingerprint"), saved["dataset"]["fingerprint"], str)
    renamed = {"backbone": "backbone.name", "stem": "backbone.stem", "hp": "hp_overrides"}
    candidate = TrainConfig(**{"out": str(Path(where).parent), **fields})
    candidate.check(lambda name: label(renamed.get(name, name)))
    return fields


def merge_for_resume(saved: dict, given: dict, run_dir: str) -> dict:
    """The saved settings of a run, with the options a resumed run may change taken from `given`;
    any other option that differs is refused."""
    merged = dict(saved)
    for key, value in given.items():
        if value is None:
            continue
        if key in RESUMABLE_CHANGES:
            merged[key] = value
        elif key in saved and json_ready(value) != json_ready(saved[key]):
            raise TrainingError(f"{option_label(key)} {_shown(value)}: differs from {run_dir}/config.json "
                                f"({_shown(saved[key])}); a resumed run keeps the settings it started with")
    return merged


def config_for_resume(out: str, given: dict) -> TrainConfig:
    """The saved settings of RUN_DIR with the command line's allowed changes; other differences are
    refused (`given` holds only the options the user actually passed)."""
    config_path = Path(out).expanduser() / "config.json"
    saved = fields_from_saved(read_run_config(config_path), config_path)
    given = dict(given)
    if given.get("hp"):
        method = given.get("method") or saved["method"]
        given["hp"], _ = resolve_hyperparameters(method, given["hp"], given.get("backbone") or saved["backbone"])
        saved["hp"], _ = resolve_hyperparameters(saved["method"], saved["hp"], saved["backbone"])
    merged = merge_for_resume(saved, given, out)
    # a resumed run goes to the end of its schedule unless told where to stop (--steps of the first
    # start was a smoke-run limit, not part of the schedule)
    merged.update(resume=True, out=out, steps=given.get("steps"))
    return TrainConfig(**merged).check()


def resumed(cfg: TrainConfig) -> TrainConfig:
    """For a caller that built a full TrainConfig with resume=True (reproduce): the saved settings
    win, only the resumable options are taken from `cfg`."""
    config_path = Path(cfg.out).expanduser() / "config.json"
    saved = fields_from_saved(read_run_config(config_path), config_path)
    return TrainConfig(**{**saved, **{k: getattr(cfg, k) for k in RESUMABLE_CHANGES}})
