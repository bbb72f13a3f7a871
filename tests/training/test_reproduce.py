"""`reproduce NAME`: experiment files and the paper's numbers, run reuse, and every `--smoke`
reproduction producing its table (Markdown, CSV) and figure (PNG), plainly marked as a smoke run.

The seven smoke reproductions share one runs folder (as a user's would), so a run two tables need
(Table 1's 200-epoch SimCLR is Table 5's 157-image SimCLR and Figure 5's full-pipeline one) is
trained once; the test that re-runs Table 1 checks nothing is trained or evaluated again."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from PIL import Image

from semantic_pairs_cli.main import main
from training.eval.errors import EvalError
from training.reproduce.experiments import load_experiment, names
from training.reproduce.runs import train_hours

NAMES = ("figure4", "table1", "table2", "table3", "table4", "table5", "figure5")


def test_every_table_and_figure_has_an_experiment_file_with_the_papers_numbers():
    assert set(names()) == set(NAMES)
    table1 = load_experiment("table1")
    assert table1.cell("SimCLR (SP)", "800 Epochs").paper == 86.56
    assert table1.cell("SimCLR (AP)", "400 Epochs").run.epochs == 400
    table3 = load_experiment("table3")
    assert table3.cell("SimCLR (AP)", "AP").paper == 48.90 and table3.cell("SimCLR (SP)", "AP75").eval.metric == "AP75"
    table4 = load_experiment("table4")
    assert table4.cell("DINO (SP)", "STL-10").run.backbone == "vit_s8" and table4.cell("DINO (SP)", "STL-10").eval.kind == "finetune"
    assert load_experiment("table5").cell("SimCLR (AP)", "50 Images").run.data_config == "ap_50"
    assert load_experiment("figure5").cell("SimCLR (SP)", "Only_c").run.aug == "only_c"
    assert load_experiment("table2").cell("SimCLR (Tiny-ImageNet)", "Time (h)").value == "train_hours"
    # One run serves several tables: the same spec, the same folder name.
    shared = {load_experiment("table1").cell("SimCLR (SP)", "200 Epochs").run.name,
              load_experiment("table5").cell("SimCLR (SP)", "157 Images").run.name,
              load_experiment("figure4").cell("SimCLR (SP)", "STL-10").run.name,
              load_experiment("figure5").cell("SimCLR (SP)", "All").run.name}
    assert shared == {"simclr-sp-resnet50-e200-paper"}


def test_bad_experiment_files_are_refused_by_name(tmp_path):
    (tmp_path / "broken.yaml").write_text("title: x\nrows: [{label: A, run: {method: simclr, colour: red}}]\n"
                                          "columns: [{label: B, eval: {kind: linear, dataset: cifar10}}]\n")
    with pytest.raises(EvalError, match="broken.yaml: row 'A': unknown run field\\(s\\) colour"):
        load_experiment("broken", tmp_path)
    with pytest.raises(EvalError, match="no experiment file table9.yaml"):
        load_experiment("table9")


def test_training_hours_add_up_over_restarts(tmp_path):
    lines = [{"step": 1, "seconds": 10.0}, {"step": 2, "seconds": 3600.0},  # first start
             {"step": 3, "seconds": 5.0}, {"step": 4, "seconds": 1800.0}]  # resumed: counts from 0 again
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert train_hours(tmp_path) == pytest.approx(1.5)


def test_missing_runs_without_data_are_reported_not_guessed(tmp_path, capsys):
    code = main(["reproduce", "table1", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "must be trained: pass --data REPO_OR_DIR" in capsys.readouterr().err
    assert main(["reproduce", "table1", "--dry-run", "--runs", str(tmp_path / "runs")]) == 0
    assert "missing  " in capsys.readouterr().out


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """All seven smoke reproductions into one runs folder and one output folder."""
    root = tmp_path_factory.mktemp("smoke")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second spinning thread only slows a shared machine
    try:
        for name in NAMES:
            assert main(["reproduce", name, "--smoke", "--runs", str(root / "runs"), "--out", str(root / "results")]) == 0
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.mark.slow  # the shared fixture trains ~27 tiny runs: about a minute on 2 cores
@pytest.mark.parametrize("name", NAMES)
def test_smoke_reproduction_writes_its_table_and_figure(smoke, name):
    experiment = load_experiment(name)
    markdown = (smoke / "results" / f"{name}.md").read_text()
    assert "SMOKE RUN" in markdown and "not a reproduction" in markdown
    with (smoke / "results" / f"{name}.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    cells = [r for r in rows if r["row"] in experiment.rows]
    assert len(cells) == len(experiment.rows) * len(experiment.columns)
    assert all(r["smoke"] == "True" and r["ours"] != "" for r in cells)
    # The paper's numbers sit in their own column, with the delta ours - paper.
    for r in cells:
        paper = experiment.cell(r["row"], r["column"]).paper
        assert (r["paper"] == "") == (paper is None)
        if paper is not None:
            assert float(r["delta"]) == pytest.approx(float(r["ours"]) - paper, abs=1e-3)
    with Image.open(smoke / "results" / f"{name}.png") as figure:
        assert figure.format == "PNG" and figure.width > 300


def test_smoke_runs_are_real_runs_and_stand_ins_are_labelled(smoke):
    markdown = (smoke / "results" / "figure4.md").read_text()
    assert "standing in for CIFAR-100" in markdown and "standing in for STL-10" in markdown
    run = smoke / "runs" / "simclr-sp-vit_tiny8-e200-paper"
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "simclr" and config["config"] == "sp" and config["steps"] == 4
    assert (run / "eval" / "linear-cifar10.json").is_file() and (run / "metrics.jsonl").is_file()
    table3 = (smoke / "results" / "table3.csv").read_text()
    assert "detection-VOCdevkit.json" in table3  # detection really ran on the VOC-format sample
    table2 = {(r["row"], r["column"]): r for r in csv.DictReader((smoke / "results" / "table2.csv").open())}
    assert float(table2[("SimCLR (Tiny-ImageNet)", "Samples")]["ours"]) == 300  # the bundled Tiny-ImageNet sample
    assert float(table2[("SimCLR (SP)", "Time (h)")]["ours"]) > 0


def test_a_second_reproduction_reuses_runs_and_evaluations(smoke, capsys):
    checkpoint = smoke / "runs" / "simclr-ap-vit_tiny8-e800-paper" / "checkpoints" / "last.pt"
    before = checkpoint.stat().st_mtime_ns
    assert main(["reproduce", "table1", "--smoke", "--runs", str(smoke / "runs"), "--out", str(smoke / "again")]) == 0
    log = capsys.readouterr().err
    assert log.count("reuse ") == 6 and "train " not in log and "eval " not in log
    assert checkpoint.stat().st_mtime_ns == before
    assert (smoke / "again" / "table1.csv").read_text().splitlines()[1:] == \
        (smoke / "results" / "table1.csv").read_text().splitlines()[1:]


def test_a_foreign_run_under_a_runs_name_is_refused(smoke, tmp_path, capsys):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(smoke / "runs" / "simclr-ap-vit_tiny8-e400-paper", runs / "simclr-sp-vit_tiny8-e400-paper")
    code = main(["reproduce", "table1", "--smoke", "--only", "SP", "--runs", str(runs), "--out", str(tmp_path)])
    assert code == 2
    assert "holds a different run" in capsys.readouterr().err


def test_only_some_rows_still_writes_table_and_figure(smoke, tmp_path):
    out = tmp_path / "partial"
    code = main(["reproduce", "figure4", "--smoke", "--only", "SimCLR", "--runs", str(smoke / "runs"), "--out", str(out)])
    assert code == 0
    rows = {r["row"] for r in csv.DictReader((out / "figure4.csv").open())}
    assert rows and all("SimCLR" in row for row in rows)
    assert (out / "figure4.png").stat().st_size > 0
