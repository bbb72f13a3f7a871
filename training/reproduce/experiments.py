"""Experiment files (`experiment_files/NAME.yaml`) and the paper's numbers (`paper_numbers.yaml`),
read and checked into cells: one (row, column) of a table = one run spec + what to read from it.

A row and a column each contribute run fields (method, config, epochs, aug, backbone, subset) on
top of the file's `defaults` and the protocol's (paper §4: ResNet-50, 64x64, batch 256, 200
epochs, the full transformation pipeline, 157 pairs per class). A column either evaluates the run
(`eval: {kind, dataset[, metric]}`) or reads a property of the run (`value: classes | samples |
train_hours`). Runs are identified by their fields, so cells of different experiments that need
the same run (Table 1's 200-epoch SimCLR is Table 5's 157-image SimCLR) share it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pair_manifest.protocol import BACKBONE, EPOCHS, PAIRS_PER_CLASS, SUBSETS
from training.eval.errors import EvalError

HERE = Path(__file__).resolve().parent
EXPERIMENTS = HERE / "experiment_files"
PAPER_NUMBERS = HERE / "paper_numbers.yaml"
RUN_FIELDS = ("method", "config", "epochs", "aug", "backbone", "subset", "hp")
EVAL_KINDS = ("linear", "knn", "finetune", "detection")
VALUES = ("classes", "samples", "train_hours")


@dataclass(frozen=True)
class RunSpec:
    """One pretraining run. Defaults are the paper's protocol (§4)."""

    method: str = "simclr"
    config: str = "sp"  # sp | ap | tiny_imagenet (the subset picks sp_50, sp_100, ...)
    epochs: int = EPOCHS
    aug: str = "paper"
    backbone: str = BACKBONE
    subset: int = PAIRS_PER_CLASS  # pairs (images) per class
    hp: tuple = ()  # sorted (field, value) overrides of the method's hyperparameters

    @property
    def hp_dict(self) -> dict:
        return dict(self.hp)

    @property
    def data_config(self) -> str:
        """The release config to train on: sp/ap with the subset suffix, or tiny_imagenet."""
        if self.config in ("sp", "ap") and self.subset != PAIRS_PER_CLASS:
            return f"{self.config}_{self.subset}"
        return self.config

    @property
    def name(self) -> str:
        """Folder name under --runs: every field, so equal names mean equal runs."""
        name = f"{self.method}-{self.data_config}-{self.backbone}-e{self.epochs}-{self.aug}"
        if self.hp:
            text = ",".join(f"{key}={value}" for key, value in self.hp)
            name += "-hp" + hashlib.sha256(text.encode()).hexdigest()[:8]
        return name


@dataclass(frozen=True)
class EvalSpec:
    kind: str
    dataset: str  # cifar10 | cifar100 | stl10 | voc | a path or Hub id
    metric: str = "top1"


@dataclass(frozen=True)
class Cell:
    row: str
    column: str
    run: RunSpec
    eval: EvalSpec | None = None  # None: the column reads `value` from the run
    value: str | None = None
    paper: float | None = None
    paper_source: str | None = None


@dataclass
class Experiment:
    name: str
    title: str
    metric: str
    plot: str
    rows: list[str]
    columns: list[str]
    cells: list[Cell]
    differences: list[dict] = field(default_factory=list)
    paper_rows: dict = field(default_factory=dict)  # label -> column -> {value, source}

    def cell(self, row: str, column: str) -> Cell:
        return next(c for c in self.cells if c.row == row and c.column == column)


def names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise EvalError(f"{path}: cannot be read as YAML ({error})") from None
    if not isinstance(data, dict):
        raise EvalError(f"{path}: expected a mapping at the top level")
    return data


def _run_fields(fields, where: str) -> dict:
    fields = fields or {}
    if not isinstance(fields, dict):
        raise EvalError(f"{where}: 'run' must be a mapping")
    unknown = sorted(set(fields) - set(RUN_FIELDS))
    if unknown:
        raise EvalError(f"{where}: unknown run field(s) {', '.join(unknown)}; known: {', '.join(RUN_FIELDS)}")
    if "subset" in fields and fields["subset"] not in SUBSETS:
        raise EvalError(f"{where}: subset {fields['subset']} is not one of {SUBSETS}")
    fields = dict(fields)
    if "hp" in fields:
        if not isinstance(fields["hp"], dict):
            raise EvalError(f"{where}: 'hp' must be a mapping of hyperparameter overrides")
        fields["hp"] = tuple(sorted((str(k), v if not isinstance(v, list) else tuple(v)) for k, v in fields["hp"].items()))
    return fields


def load_experiment(name: str, experiments_dir: Path = EXPERIMENTS, paper_path: Path = PAPER_NUMBERS) -> Experiment:
    path = experiments_dir / f"{name}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in experiments_dir.glob("*.yaml")))
        raise EvalError(f"reproduce {name}: no experiment file {path.name} (available: {available})")
    spec = _read_yaml(path)
    for key in ("title", "rows", "columns"):
        if key not in spec:
            raise EvalError(f"{path}: field '{key}' is missing")
    paper = _read_yaml(paper_path).get(spec.get("paper", name)) or {}
    defaults = _run_fields(spec.get("defaults"), f"{path}: defaults")
    cells = []
    for row in spec["rows"]:
        row_fields = _run_fields(row.get("run"), f"{path}: row '{row.get('label')}'")
        for column in spec["columns"]:
            where = f"{path}: column '{column.get('label')}'"
            column_fields = _run_fields(column.get("run"), where)
            try:
                run = RunSpec(**{**defaults, **row_fields, **column_fields})
            except TypeError as error:
                raise EvalError(f"{where}: {error}") from None
            evaluation, value = column.get("eval"), column.get("value")
            if (evaluation is None) == (value is None):
                raise EvalError(f"{where}: give exactly one of 'eval' or 'value'")
            if evaluation is not None:
                if evaluation.get("kind") not in EVAL_KINDS or "dataset" not in evaluation:
                    raise EvalError(f"{where}: eval needs kind ({'|'.join(EVAL_KINDS)}) and dataset")
                evaluation = EvalSpec(evaluation["kind"], str(evaluation["dataset"]),
                                      evaluation.get("metric", spec.get("metric", "top1")))
            elif value not in VALUES:
                raise EvalError(f"{where}: value '{value}' is not one of {', '.join(VALUES)}")
            reported = (paper.get(row["label"]) or {}).get(column["label"]) or {}
            cells.append(Cell(row["label"], column["label"], run, evaluation, value,
                              reported.get("value"), reported.get("source")))
    for difference in spec.get("differences") or []:
        labels = {row["label"] for row in spec["rows"]}
        if difference.get("minuend") not in labels or difference.get("subtrahend") not in labels:
            raise EvalError(f"{path}: difference '{difference.get('label')}' names a row that does not exist")
    return Experiment(
        name=name, title=spec["title"], metric=spec.get("metric", "top1"), plot=spec.get("plot", "bars"),
        rows=[row["label"] for row in spec["rows"]], columns=[column["label"] for column in spec["columns"]],
        cells=cells, differences=list(spec.get("differences") or []), paper_rows=paper,
    )

