"""`reproduce NAME`: experiment file -> runs (reused, resumed or trained) -> evaluations (reused
when their JSON matches the run's current checkpoint) -> OUT/NAME.md, .csv, .png."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from training.eval.errors import EvalError
from training.eval.results import read_result, result_path
from training.eval.runs import CHECKPOINT, file_sha256
from training.reproduce import smoke as smoke_mode
from training.reproduce.experiments import Cell, load_experiment
from training.reproduce.report import Result, differences, write_csv, write_markdown, write_plot
from training.reproduce.runs import DONE, TrainSettings, run_dir, run_environment, run_value, status, train_run

PERCENT_METRICS = ("top1", "AP", "AP50", "AP75")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Reproduction:
    def __init__(self, name: str, smoke: bool, runs: str | None, out: str | None, data: str | None, device: str | None,
                 only: str | None, tiny_imagenet: str | None, voc: str | None):
        self.experiment = load_experiment(name)
        self.smoke = smoke
        self.runs = Path(runs or ("runs/smoke" if smoke else "runs"))
        self.out = Path(out or ("results/smoke" if smoke else "results"))
        for option, folder in (("--runs", self.runs), ("--out", self.out)):
            if folder.exists() and not folder.is_dir():
                raise EvalError(f"{option} {folder}: is a file, not a folder; choose another {option}")
        self.device = device or ("cpu" if smoke else "auto")
        self.only = only
        self.data, self.tiny_imagenet, self.voc = data, tiny_imagenet, voc
        self.notes: list[str] = []
        cells = self.experiment.cells
        if only:
            cells = [c for c in cells if only.lower() in c.row.lower()]
            if not cells:
                raise EvalError(f"--only {only}: matches none of the rows {self.experiment.rows}")
        if smoke:
            cells = [replace(c, run=smoke_mode.smoke_run(c.run, c.eval.kind if c.eval else None)) for c in cells]
        self.cells = cells

    # ----- runs ------------------------------------------------------------------------------
    def settings(self) -> TrainSettings:
        if self.smoke:
            data_dir = self.runs / "_data"
            return TrainSettings(
                data=str(smoke_mode.sample_release(data_dir)),
                tiny_imagenet=str(smoke_mode.SAMPLE / "tiny_imagenet"), device=self.device,
                resolution=smoke_mode.RESOLUTION, batch_size=smoke_mode.BATCH_SIZE, steps=smoke_mode.STEPS,
                hp=smoke_mode.METHOD_HP, workers=1, cache_dir=str(data_dir / "decoded"), progress=False,
            )
        return TrainSettings(data=self.data, tiny_imagenet=self.tiny_imagenet, device=self.device)

    def plan(self) -> list[tuple]:
        specs = list(dict.fromkeys(cell.run for cell in self.cells))
        return [(spec, run_dir(self.runs, spec), status(run_dir(self.runs, spec), spec)) for spec in specs]

    def ensure_runs(self) -> None:
        settings = None
        for spec, folder, state in self.plan():
            if state == DONE:
                say(f"[{self.experiment.name}] reuse {folder}")
                continue
            say(f"[{self.experiment.name}] {'resume' if state == 'partial' else 'train'} {folder}")
            settings = settings or self.settings()
            train_run(folder, spec, settings)

    # ----- evaluations -----------------------------------------------------------------------
    def dataset_for(self, cell: Cell) -> tuple[str, str]:
        """(what to pass as --dataset, a note for the report)."""
        name = cell.eval.dataset
        if cell.eval.kind == "detection":
            if self.smoke:
                return str(smoke_mode.sample_voc(self.runs / "_data")), "20-image VOC-format sample with hand-drawn boxes"
            if name == "voc":
                if not self.voc:
                    raise EvalError(f"{self.experiment.name}: detection needs --voc DIR (a VOCdevkit with VOC2007 and VOC2012)")
                return self.voc, ""
            return name, ""
        if self.smoke:
            return smoke_mode.sample_dataset(name)
        return name, ""

    def evaluate(self, cell: Cell, folder: Path) -> tuple[dict, Path, str]:
        dataset, note = self.dataset_for(cell)
        kind = cell.eval.kind
        from training.eval.datasets import dataset_slug

        path = result_path(folder, kind, dataset_slug(dataset))
        existing = read_result(folder, kind, dataset_slug(dataset))
        if existing is not None and existing.get("checkpoint_sha256") == file_sha256(folder / CHECKPOINT):
            return existing, path, note
        say(f"[{self.experiment.name}] eval {kind} {dataset} on {folder.name}")
        if kind in ("linear", "knn"):
            from training.eval.classify import evaluate_frozen

            options = {"weight_decays": smoke_mode.LINEAR_WEIGHT_DECAYS} if self.smoke and kind == "linear" else {}
            result, path = evaluate_frozen(kind, folder, dataset, self.device, **options)
        elif kind == "finetune":
            from training.eval.finetune import FinetuneHyperparameters, finetune

            hp = FinetuneHyperparameters(epochs=smoke_mode.FINETUNE_EPOCHS, batch_size=64) if self.smoke \
                else FinetuneHyperparameters()
            result, path = finetune(folder, dataset, hp, self.device, workers=0 if self.smoke else None)
        else:
            from training.eval.detection import DetectionHyperparameters, detection_eval
            from training.eval.voc_sample import SAMPLE_CLASSES

            if self.smoke:
                result, path = detection_eval(folder, dataset, DetectionHyperparameters(**smoke_mode.DETECTION),
                                              self.device, workers=0, classes=SAMPLE_CLASSES)
            else:
                result, path = detection_eval(folder, dataset, DetectionHyperparameters(), self.device)
        return result, path, note

    def results(self) -> list[Result]:
        results = []
        for cell in self.cells:
            folder = run_dir(self.runs, cell.run)
            if cell.eval is None:
                value = run_value(folder, cell.value)
                results.append(Result(cell.row, cell.column, value, cell.paper, cell.paper_source, folder.name,
                                      str(folder / ("metrics.jsonl" if cell.value == "train_hours" else "config.json"))))
                continue
            result, path, note = self.evaluate(cell, folder)
            value = result.get(cell.eval.metric)
            if value is not None and cell.eval.metric in PERCENT_METRICS:
                value = 100 * float(value)
            results.append(Result(cell.row, cell.column, value, cell.paper, cell.paper_source, folder.name, str(path), note))
        return results

    # ----- all of it -------------------------------------------------------------------------
    def run(self, dry_run: bool = False) -> int:
        if dry_run:
            for spec, folder, state in self.plan():
                print(f"{state:8s} {folder}")
            for cell in self.cells:
                what = f"eval {cell.eval.kind} {cell.eval.dataset} [{cell.eval.metric}]" if cell.eval else cell.value
                print(f"cell     {cell.row} / {cell.column}: {what} of {cell.run.name}")
            return 0
        self.ensure_runs()
        results = self.results()
        results += differences(self.experiment, results)
        notes = sorted({f"{r.column}: {r.note}" for r in results if r.note})
        if self.smoke:
            notes.insert(0, "SP/AP: a release built by `semantic-pairs manifest import` + `build` from the bundled "
                            "sample, pairing consecutive files of each class (real photos, not curated pairs); "
                            "334 pairs, so the 50/100/157-per-class subsets are the same data.")
            notes.insert(1, f"Runs: {smoke_mode.STEPS} steps, batch {smoke_mode.BATCH_SIZE}, {smoke_mode.RESOLUTION}x"
                            f"{smoke_mode.RESOLUTION}, ViT-tiny/8 (ResNet-18 for detection) with narrow heads.")
        if self.experiment.name == "table2":
            notes.append("Time (h): wall-clock of the training steps from metrics.jsonl (decoding the data once "
                         "and evaluation excluded); the paper's times are on one A100 80G.")
        self.out.mkdir(parents=True, exist_ok=True)
        runs = [(folder.name, run_environment(folder)) for _, folder, _ in self.plan()]
        base = self.out / self.experiment.name
        write_csv(base.with_suffix(".csv"), self.experiment, results, self.smoke)
        write_markdown(base.with_suffix(".md"), self.experiment, results, runs, self.smoke, notes)
        write_plot(base.with_suffix(".png"), self.experiment, results, self.smoke)
        print(f"{self.experiment.name}{' (smoke run)' if self.smoke else ''}: wrote {base}.md, .csv, .png")
        return 0


def reproduce(name: str, smoke: bool = False, runs: str | None = None, out: str | None = None, data: str | None = None,
              device: str | None = None, only: str | None = None, dry_run: bool = False,
              tiny_imagenet: str | None = None, voc: str | None = None) -> int:
    return Reproduction(name, smoke, runs, out, data, device, only, tiny_imagenet, voc).run(dry_run)
