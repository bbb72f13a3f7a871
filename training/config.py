"""The settings of one training run, checked up front with one-line messages naming the option.

Every value a run depends on lands in RUN_DIR/config.json; a resumed run reads them back from there
and refuses a command line that would change them (except where to stop and how to report)."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

from training.errors import TrainingError

BACKBONES = ("resnet50", "resnet18", "vit_s8", "vit_tiny8")
STEMS = ("imagenet", "small")
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cuda", "cpu")
# Options a resumed run may change: they decide when to stop, where and how fast it runs, and how it
# reports; not what is computed.
RESUMABLE_CHANGES = ("steps", "progress", "workers", "cache_dir", "hf_cache_dir", "log_every", "resume", "out",
                     "device", "compile", "cuda_graphs")


@dataclass
class TrainConfig:
    data: str
    config: str
    method: str
    out: str
    epochs: int = 200  # paper §4: 200 (also 400, 800 for Table 1; DINO 300)
    batch_size: int = 256  # paper §4
    resolution: int = 64  # paper §4: 64x64 inputs
    aug: str = "paper"
    backbone: str = "resnet50"
    stem: str = "imagenet"  # see training/backbones.py for why the reproduction keeps the ImageNet stem
    steps: int | None = None  # stop after this many steps (smoke runs); the schedule stays --epochs'
    seed: int = 0
    hp: dict = field(default_factory=dict)  # overrides of the method's Hyperparameters
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

    def check(self) -> "TrainConfig":
        from training.augment import AUG_CHOICES
        from training.methods import METHODS

        def need(condition: bool, message: str) -> None:
            if not condition:
                raise TrainingError(message)

        need(self.method in METHODS, f"--method {self.method}: not one of {', '.join(METHODS)}")
        need(self.aug in AUG_CHOICES, f"--aug {self.aug}: not one of {', '.join(AUG_CHOICES)}")
        need(self.backbone in BACKBONES, f"--backbone {self.backbone}: not one of {', '.join(BACKBONES)}")
        need(self.stem in STEMS, f"--stem {self.stem}: not one of {', '.join(STEMS)}")
        need(self.precision in PRECISIONS, f"--precision {self.precision}: not one of {', '.join(PRECISIONS)}")
        need(self.device in DEVICES, f"--device {self.device}: not one of {', '.join(DEVICES)}")
        for name in ("epochs", "batch_size", "resolution", "log_every"):
            value = getattr(self, name)
            need(isinstance(value, int) and value >= 1, f"--{name.replace('_', '-')} {value}: must be a positive integer")
        need(self.batch_size >= 2, f"--batch-size {self.batch_size}: must be at least 2")
        need(8 <= self.resolution <= 1024, f"--resolution {self.resolution}: must be between 8 and 1024")
        if self.backbone.startswith("vit"):
            need(self.resolution % 8 == 0, f"--resolution {self.resolution}: a ViT with 8x8 patches needs a multiple of 8")
        for name in ("steps", "checkpoint_every", "shards", "workers"):
            value = getattr(self, name)
            need(value is None or (isinstance(value, int) and value >= 1),
                 f"--{name.replace('_', '-')} {value}: must be a positive integer")
        need(all(isinstance(e, int) and 1 <= e <= self.epochs for e in self.keep_epochs),
             f"--keep-epochs {','.join(map(str, self.keep_epochs))}: each must be an epoch between 1 and {self.epochs}")
        need(bool(self.out), "--out: missing")
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _convert(text, kind, key: str):
    """A command-line string (or a JSON value read back) as the type of a hyperparameter field."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text is None or (isinstance(text, str) and text.lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(text, inner[0], key)
    if origin is tuple:
        items = text if isinstance(text, (list, tuple)) else [t for t in str(text).split(",") if t.strip()]
        element_types = [args[0]] * len(items) if (len(args) == 2 and args[1] is Ellipsis) else list(args)
        if len(element_types) != len(items):
            raise TrainingError(f"--hp {key}={text}: expected {len(args)} comma-separated values")
        return tuple(_convert(item, t, key) for item, t in zip(items, element_types))
    if kind is bool:
        if isinstance(text, bool):
            return text
        if str(text).lower() in ("true", "1", "yes"):
            return True
        if str(text).lower() in ("false", "0", "no"):
            return False
        raise TrainingError(f"--hp {key}={text}: not a boolean (true/false)")
    if kind in (int, float, str):
        try:
            if kind is int and isinstance(text, str) and not text.strip().lstrip("-").isdigit():
                raise ValueError
            return kind(text)
        except (TypeError, ValueError):
            raise TrainingError(f"--hp {key}={text}: not {'an integer' if kind is int else 'a number'}") from None
    raise TrainingError(f"--hp {key}: fields of type {kind} cannot be set from the command line")


def parse_hp_overrides(hyperparameters_cls, overrides) -> dict:
    """`["temperature=0.2", ...]` (or a dict from config.json) -> {field: typed value}."""
    hints = typing.get_type_hints(hyperparameters_cls)
    names = [f.name for f in dataclasses.fields(hyperparameters_cls)]
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        pairs = []
        for item in overrides:
            if "=" not in item:
                raise TrainingError(f"--hp {item}: expected KEY=VALUE")
            key, value = item.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    typed = {}
    for key, value in pairs:
        if key not in names:
            raise TrainingError(f"--hp {key}: not a hyperparameter of this method (it has: {', '.join(names)})")
        typed[key] = _convert(value, hints[key], key)
    return typed


def build_hyperparameters(module, overrides: dict, *, backbone: str):
    """The method's frozen Hyperparameters for this backbone, with the overrides applied (its own
    checks included). A method whose paper gives one recipe per architecture (DINO: ViT and
    ResNet) says which through `default_hyperparameters(backbone)`."""
    recipe = getattr(module, "default_hyperparameters", None)
    base = recipe(backbone) if recipe is not None else module.Hyperparameters()
    try:
        return dataclasses.replace(base, **overrides)
    except (ValueError, TypeError) as error:
        raise TrainingError(f"--hp: {error}") from error


def json_ready(value):
    """Tuples -> lists, recursively (what json.dumps writes anyway), for comparisons with config.json."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def merge_for_resume(saved: dict, given: dict, run_dir: str) -> dict:
    """The saved settings of a run, with the options a resumed run may change taken from `given`;
    any other option that differs is refused."""
    merged = dict(saved)
    for key, value in given.items():
        if value is None or key not in saved:
            continue
        if key in RESUMABLE_CHANGES:
            merged[key] = value
        elif json_ready(value) != json_ready(saved[key]):
            raise TrainingError(f"--{key.replace('_', '-')} {value}: differs from {run_dir}/config.json "
                                f"({saved[key]}); a resumed run keeps the settings it started with")
    return merged
