"""Write a reproduced table: `OUT/NAME.md` (ours beside the paper's, with deltas), `OUT/NAME.csv`
(one line per cell) and `OUT/NAME.png` (matplotlib: our values as bars or lines, the paper's as
black markers). Values are percentages for accuracies and APs; `Time (h)` is hours."""
from __future__ import annotations

import csv
import io
import math
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pair_manifest.atomic import write_atomically
from training.eval.errors import EvalError
from training.reproduce.experiments import Experiment


def write_file(path: Path, data: bytes) -> None:
    """Replace `path` atomically; a write the machine refuses is one line naming the file."""
    try:
        write_atomically(path, lambda handle: handle.write(data))
    except OSError as error:
        raise EvalError(f"{path}: could not be written ({error.strerror or error}); the previous file, if any, "
                        "is unchanged") from None


@dataclass
class Result:
    row: str
    column: str
    ours: float | None  # display units (percent, count, hours)
    paper: float | None
    paper_source: str | None
    run: str  # run folder name
    evidence: str  # the eval JSON or run file the number comes from
    note: str = ""  # e.g. the stand-in dataset in smoke mode

    @property
    def delta(self) -> float | None:
        return None if self.ours is None or self.paper is None else self.ours - self.paper


def _fmt(value: float | None, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if column in ("Classes", "Samples"):
        return f"{value:,.0f}"
    if column.startswith("Time"):
        return f"{value:.3g}" if 0 < abs(value) < 0.1 else f"{value:.2f}"
    return f"{value:.2f}"


def _signed(value: float | None, column: str) -> str:
    text = _fmt(value, column)
    return text if value is None or text == "n/a" or value < 0 else f"+{text}"


def differences(experiment: Experiment, results: list[Result]) -> list[Result]:
    """The experiment's SP - AP rows, computed for ours and for the paper's reported values."""
    lookup = {(r.row, r.column): r for r in results}
    out = []
    for spec in experiment.differences:
        for column in experiment.columns:
            a, b = lookup.get((spec["minuend"], column)), lookup.get((spec["subtrahend"], column))
            if a is None or b is None or column in ("Classes", "Samples") or column.startswith("Time"):
                continue
            ours = None if a.ours is None or b.ours is None else a.ours - b.ours
            reported = (experiment.paper_rows.get(spec["label"]) or {}).get(column) or {}
            paper = reported.get("value")
            if paper is None and a.paper is not None and b.paper is not None:
                paper = round(a.paper - b.paper, 2)
            out.append(Result(spec["label"], column, ours, paper, reported.get("source") or
                              (f"{spec['minuend']} - {spec['subtrahend']}" if paper is not None else None), "", ""))
    return out


def write_csv(path: Path, experiment: Experiment, results: list[Result], smoke: bool) -> None:
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(["experiment", "row", "column", "ours", "paper", "delta", "smoke", "run", "evidence",
                     "note", "paper_source"])
    for r in results:
        # Six significant digits, not four decimals: a smoke run's training time is ~1e-4 h.
        writer.writerow([experiment.name, r.row, r.column, "" if r.ours is None else f"{r.ours:.6g}",
                         "" if r.paper is None else r.paper, "" if r.delta is None else f"{r.delta:.6g}",
                         smoke, r.run, r.evidence, r.note, r.paper_source or ""])
    write_file(path, handle.getvalue().encode("utf-8"))


def write_markdown(path: Path, experiment: Experiment, results: list[Result], runs: list[tuple[str, str]],
                   smoke: bool, notes: list[str]) -> None:
    lines = [f"# {experiment.title}", ""]
    if smoke:
        lines += ["> **SMOKE RUN — these numbers are not a reproduction.** Tiny backbones trained for a handful "
                  "of steps on CPU on the bundled sample and evaluated on bundled stand-ins for the paper's "
                  "datasets (see Notes). It checks that the chain runs end to end; compare nothing with the "
                  "paper's column.", ""]
    lines += ["Ours, the paper's reported value, and Δ = ours − paper (percentage points; `n/a`: the paper's text "
              "does not give the value). Rows marked Δ/Improvement are SP − AP.", "",
              "| Row | Column | Ours | Paper | Δ |", "| --- | --- | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r.row} | {r.column} | {_fmt(r.ours, r.column)} | {_fmt(r.paper, r.column)} | "
                     f"{_signed(r.delta, r.column)} |")
    lines += ["", "## Runs", ""]
    lines += [f"- `{name}`: {environment}" for name, environment in runs]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    sources = sorted({f"{r.row} / {r.column}: {r.paper_source}" for r in results if r.paper_source})
    if sources:
        lines += ["", "## Where the paper's numbers come from", ""] + [f"- {s}" for s in sources]
    lines += ["", f"Generated by `semantic-pairs reproduce {experiment.name}{' --smoke' if smoke else ''}` on "
              f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.", ""]
    write_file(path, "\n".join(lines).encode("utf-8"))


def write_plot(path: Path, experiment: Experiment, results: list[Result], smoke: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in experiment.columns if c not in ("Classes", "Samples") and not c.startswith("Time")]
    lookup = {(r.row, r.column): r for r in results}
    rows = [row for row in experiment.rows if any((row, c) in lookup for c in columns)]  # --only keeps some

    def value(row: str, column: str, field: str) -> float | None:
        result = lookup.get((row, column))
        return None if result is None else getattr(result, field)

    stand_ins = {r.column for r in results if "standing in" in r.note}
    labels = [f"{c}\n(CIFAR-10 sample)" if c in stand_ins else c for c in columns]
    width_inches = max(6.5, 2.0 * len(columns), 0.55 * len(columns) * len(rows))
    figure, axis = plt.subplots(figsize=(width_inches, 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if experiment.plot == "lines":
        xs = list(range(len(columns)))
        for i, row in enumerate(rows):
            ours = [value(row, c, "ours") for c in columns]
            paper = [value(row, c, "paper") for c in columns]
            colour = colours[i % len(colours)]
            axis.plot(xs, [math.nan if v is None else v for v in ours], "o-", color=colour, label=f"{row} (ours)")
            axis.plot(xs, [math.nan if v is None else v for v in paper], "x--", color=colour, label=f"{row} (paper)")
        axis.set_xticks(xs, labels)
    else:
        width = 0.8 / max(1, len(rows))
        for i, row in enumerate(rows):
            positions = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(columns))]
            ours = [value(row, c, "ours") for c in columns]
            paper = [value(row, c, "paper") for c in columns]
            hatch = "//" if "(SP)" in row else None  # the paper's Figure 4: SP striped, AP solid
            axis.bar(positions, [0 if v is None else v for v in ours], width, color=colours[(i // 2) % len(colours)]
                     if len(rows) > 2 else colours[i % len(colours)], hatch=hatch, label=row,
                     edgecolor="white" if hatch else None)
            marked = [(p, v) for p, v in zip(positions, paper) if v is not None]
            if marked:
                axis.scatter([p for p, _ in marked], [v for _, v in marked], marker="_", s=200, color="black",
                             zorder=3, label="paper" if i == 0 else None)
        axis.set_xticks(range(len(columns)), labels)
    axis.set_ylabel({"top1": "top-1 (%)", "AP": "AP (%)"}.get(experiment.metric, experiment.metric))
    title = ("SMOKE RUN (not a reproduction): " if smoke else "") + experiment.title
    axis.set_title(textwrap.fill(title, width=int(13 * width_inches)), fontsize=10, color="crimson" if smoke else "black")
    axis.legend(fontsize=7, ncol=2)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=120)
    plt.close(figure)
    write_file(path, image.getvalue())
