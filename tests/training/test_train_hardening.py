"""`train` against what users and machines do to it: an --out that is a file, a read-only file system,
a disk that fills while a checkpoint is saved, a second `train` on the same run folder, out-of-range
hyperparameters, and hundreds of generated malformed `config.json` files and --hp values. Each
ends with one line naming the file or field, a non-zero exit, and nothing written before changed;
where the machine was at fault, a rerun after the fault is gone completes."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semantic_pairs_cli.main import main
from tests.support.faults import resize, tmpfs
from training.checkpoints import load_checkpoint
from training.methods import METHODS, method_module
from training.recipe import OPTIMIZERS, field_types

SMALL = ["--config", "sp", "--resolution", "16", "--backbone", "vit_tiny8", "--batch-size", "16", "--epochs", "1"]


def _train_args(repo: Path, out: Path, cache: Path, method: str = "simclr") -> list[str]:
    return ["train", "--data", str(repo), "--method", method, "--out", str(out), *SMALL,
            "--cache-dir", str(cache / "decoded"), "--no-progress"]


def _folder_digest(folder: Path) -> str:
    """Every file under `folder` (names and bytes): equal digests mean nothing was written."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: "), err
    return err


def _ten_steps_into(disk: Path, sample_repo, training_cache, capsys) -> Path:
    """A run on `disk` stopped after 10 of its 20 steps, with its step-10 checkpoint."""
    run = disk / "run"
    assert main(_train_args(sample_repo, run, training_cache) + ["--steps", "10", "--checkpoint-every", "10"]) == 0
    capsys.readouterr()
    return run


@pytest.fixture(scope="module")
def finished_run(sample_repo, training_cache, tmp_path_factory) -> Path:
    """A run that went to the end of its schedule (1 epoch of 20 steps), written by `train` itself."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(_train_args(sample_repo, out, training_cache)) == 0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 20
    return out


# ----- outputs the machine or the user made unusable ----------------------------------------------
def test_an_out_that_is_a_file_is_refused_in_one_line(sample_repo, training_cache, tmp_path, capsys):
    in_the_way = tmp_path / "run"
    in_the_way.write_text("not a folder")
    assert main(_train_args(sample_repo, in_the_way, training_cache)) == 2
    assert f"--out {in_the_way}: is a file, not a run folder" in _one_line_error(capsys)
    assert main(["train", "--out", str(in_the_way), "--resume"]) == 2
    assert "is a file, not a run folder" in _one_line_error(capsys)
    for option in ("--out", "--runs"):
        assert main(["reproduce", "table1", option, str(in_the_way), "--dry-run"]) == 2
        assert f"{option} {in_the_way}: is a file" in _one_line_error(capsys)
    assert in_the_way.read_text() == "not a folder"


def test_a_read_only_file_system_is_one_line_and_the_run_resumes_once_writable(sample_repo, training_cache, tmp_path,
                                                                               capsys):
    with tmpfs(tmp_path / "disk", "16m") as disk:
        run = _ten_steps_into(disk, sample_repo, training_cache, capsys)
        before = _folder_digest(run)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        assert main(["train", "--out", str(run), "--resume", "--no-progress"]) != 0
        error = _one_line_error(capsys)
        assert str(run) in error and "Read-only file system" in error, error
        assert main(_train_args(sample_repo, disk / "another", training_cache)) != 0
        error = _one_line_error(capsys)
        assert str(disk / "another") in error and "Read-only file system" in error, error
        assert _folder_digest(run) == before
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
        assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 20


def test_a_disk_that_fills_while_a_checkpoint_is_saved_keeps_the_previous_one(sample_repo, training_cache, tmp_path,
                                                                              capsys):
    with tmpfs(tmp_path / "disk", "16m") as disk:
        run = _ten_steps_into(disk, sample_repo, training_cache, capsys)
        checkpoint = run / "checkpoints" / "last.pt"
        saved = checkpoint.read_bytes()
        assert len(saved) > 256 * 1024  # the next one cannot fit in what is left below
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 128 * 1024))  # leave room for logs, not for a checkpoint
        assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 1
        error = _one_line_error(capsys)
        assert str(checkpoint) in error and "No space left on device" in error, error
        assert "checkpoint of step 10 there is intact" in error and "--resume" in error
        assert checkpoint.read_bytes() == saved
        assert not [p for p in checkpoint.parent.iterdir() if p.name != "last.pt"]  # no half-written file left
        (disk / "filler").unlink()  # space freed: the rerun completes
        resize(disk, "16m")
        assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
        assert load_checkpoint(checkpoint)["step"] == 20
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, 21))


# ----- one writer per run folder ------------------------------------------------------------------
def test_a_second_train_on_the_same_run_folder_is_refused_naming_the_first(sample_repo, training_cache, tmp_path,
                                                                           capsys):
    """Two real processes: a `train` started as a command, and this test's process as the second."""
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_DATASETS_CACHE=str(training_cache / "hf"))
    first = subprocess.Popen([sys.executable, "-m", "semantic_pairs_cli", *_train_args(sample_repo, run, training_cache),
                              "--epochs", "1000", "--checkpoint-every", "5"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None and not (run / "checkpoints" / "last.pt").exists():
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        for second in (["train", "--out", str(run), "--resume", "--no-progress"],
                       _train_args(sample_repo, run, training_cache)):
            assert main(second) == 75
            error = _one_line_error(capsys)
            assert f"{run}: another process is writing this run folder (pid {first.pid}: semantic-pairs train" in error
        first.send_signal(signal.SIGKILL)  # the kernel drops the lock with its holder
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--steps", str(step)]) == 0


# ----- hyperparameters -----------------------------------------------------------------------------
def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
    lambda w: _not_a_number(w) and w not in ("none", "null"))
NEGATIVE = st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False).map(repr)
NOT_FINITE = st.sampled_from(["nan", "inf", "-inf", "NaN", "Infinity"])


def _bad_text(kind) -> st.SearchStrategy[str]:
    """Command-line text that is wrong for a field of type `kind` whatever the field's range: a
    negative number (every numeric hyperparameter is >= 0), NaN/infinity, a word, a fraction for an
    integer, a tuple of the wrong length or with a bad element."""
    text = repr(kind)
    if kind is bool:
        return WORDS.filter(lambda w: w not in ("true", "false", "yes", "no"))
    if kind is str:
        return WORDS.filter(lambda w: w not in OPTIMIZERS)
    if "tuple[str" in text:
        return st.sampled_from(["a b", "pre-dictor", "x/y", "a,b c"])
    if "tuple[float, float]" in text:
        return st.sampled_from(["0.5", "-0.1,0.9", "0.9,1.0", "0.9,0.99,0.999", "nan,0.9"])
    if "tuple[int" in text:
        return st.one_of(st.just(""), st.sampled_from(["-1", "0", "128,-5", "1.5,2", "abc"]))
    if "int" in text and "float" not in text:
        return st.one_of(st.integers(max_value=-1).map(str), st.sampled_from(["1.5", "2e0"]), WORDS)
    return st.one_of(NEGATIVE, NOT_FINITE, WORDS)


def _method_field_and_bad_value():
    return st.sampled_from(METHODS).flatmap(
        lambda method: st.sampled_from(sorted(field_types(method_module(method).Hyperparameters).items())).flatmap(
            lambda item: st.tuples(st.just(method), st.just(item[0]), _bad_text(item[1]))))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_method_field_and_bad_value())
def test_every_hyperparameter_refuses_bad_values_up_front(case, sample_repo, training_cache, tmp_path, capsys):
    method, field, value = case
    out = tmp_path / "never-written"
    code = main(_train_args(sample_repo, out, training_cache, method) + ["--hp", f"{field}={value}"])
    error = _one_line_error(capsys)
    assert code == 2 and field in error, (case, error)
    assert not out.exists()  # refused before the run folder (or a decode) was touched


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item=st.one_of(WORDS.map(lambda w: f"{w}=1"), WORDS, st.just("=0.1")))
def test_unknown_or_malformed_hp_items_are_refused(item, sample_repo, training_cache, tmp_path, capsys):
    code = main(_train_args(sample_repo, tmp_path / "never", training_cache) + ["--hp", item])
    error = _one_line_error(capsys)
    assert code == 2 and "--hp" in error, error


def test_every_field_of_every_method_is_range_checked():
    """-1 is out of range for every numeric hyperparameter of every method and of its recipe."""
    from training.recipe import with_overrides

    for method in METHODS:
        module = method_module(method)
        hp = module.Hyperparameters()
        for field, kind in field_types(module.Hyperparameters).items():
            bad = {bool: "maybe", str: "bogus"}.get(kind, -1)
            if "tuple" in repr(kind):
                bad = (-1,) if "str" not in repr(kind) else ("a b",)
            with pytest.raises(ValueError, match=field):
                with_overrides(hp, {field: bad})


def test_a_misspelt_recipe_field_fails_at_import(tmp_path, monkeypatch):
    (tmp_path / "misspelt_method.py").write_text(
        "from dataclasses import dataclass\nfrom training.recipe import Recipe\n\n@dataclass(frozen=True)\n"
        "class Hyperparameters:\n    recipe: Recipe = Recipe(optimizer='sgd', base_lr=0.1, weight_decay=0.0, "
        "warmup_epochs=0, final_lr_ration=0.001)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="final_lr_ration"):
        __import__("misspelt_method")


def test_every_method_holds_a_recipe_and_no_field_shadows_it():
    for method in METHODS:
        types = field_types(method_module(method).Hyperparameters)  # raises on a missing recipe or a clash
        assert {"optimizer", "base_lr", "weight_decay", "warmup_epochs"} <= set(types)


# ----- a run's config.json -------------------------------------------------------------------------
NOT_STR = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
                    st.dictionaries(WORDS, st.integers(), max_size=2))
NOT_INT = st.one_of(st.floats(allow_nan=False), st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2))
NOT_POSITIVE_INT = st.one_of(NOT_INT, st.integers(max_value=0))
NOT_BOOL = st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats(allow_nan=False))
NOT_OBJECT = st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2))

# field -> values that are malformed for it (wrong JSON type, or out of its range)
MALFORMED = {
    "data": NOT_STR.filter(lambda v: v is not None),
    "config": st.one_of(NOT_STR, st.sampled_from(["sp_manifest", "spx", "", "tiny"])),
    "method": st.one_of(NOT_STR, WORDS.filter(lambda w: w not in METHODS)),
    "epochs": NOT_POSITIVE_INT, "batch_size": st.one_of(NOT_INT, st.integers(max_value=1)),
    "resolution": st.one_of(NOT_INT, st.integers(max_value=7), st.integers(min_value=1025)),
    "aug": st.one_of(NOT_STR, WORDS.filter(lambda w: w not in ("paper", "gray_s", "color_jitter", "only_c", "method"))),
    "steps": st.one_of(NOT_INT, st.integers(max_value=0)), "seed": NOT_INT.filter(lambda v: v is not None),
    "device": st.one_of(NOT_STR, WORDS.filter(lambda w: w not in ("auto", "cuda", "cpu"))),
    "precision": st.one_of(NOT_STR, WORDS.filter(lambda w: w not in ("auto", "bf16", "fp32"))),
    "compile": NOT_BOOL, "cuda_graphs": NOT_BOOL,
    "checkpoint_every": st.one_of(NOT_INT, st.integers(max_value=0)),
    "keep_epochs": st.one_of(NOT_OBJECT.filter(lambda v: not isinstance(v, list)),
                             st.lists(st.one_of(st.text(max_size=3), st.integers(max_value=0),
                                                st.integers(min_value=2)), min_size=1, max_size=3)),
    "shards": st.one_of(NOT_INT, st.integers(max_value=0)), "log_every": NOT_POSITIVE_INT,
    "cache_dir": NOT_STR.filter(lambda v: v is not None),
    "backbone": st.one_of(NOT_OBJECT, st.just({}), st.just({"name": "resnet50"}),
                          st.fixed_dictionaries({"name": WORDS, "stem": st.just("imagenet"), "image_size": st.just(16)}),
                          st.fixed_dictionaries({"name": st.just("vit_tiny8"), "stem": NOT_STR})),
    "hp_overrides": st.one_of(NOT_OBJECT, st.dictionaries(WORDS.map(lambda w: w + "_x"), st.integers(), min_size=1),
                              st.fixed_dictionaries({"temperature": st.one_of(st.text(max_size=4), st.booleans(),
                                                                              st.floats(max_value=0))}),
                              st.fixed_dictionaries({"warmup_epochs": st.one_of(st.floats(min_value=0.1, max_value=9),
                                                                                st.integers(max_value=-1))})),
    "format": st.one_of(st.integers().filter(lambda v: v != 1), NOT_INT),
    "dataset": NOT_OBJECT, "schedule": NOT_OBJECT, "hyperparameters": NOT_OBJECT, "augment": NOT_OBJECT,
    "world_size": NOT_INT,
}


def _malformed_config():
    change = st.sampled_from(sorted(MALFORMED)).flatmap(lambda key: st.tuples(st.just("set"), st.just(key),
                                                                              MALFORMED[key]))
    missing = st.tuples(st.just("delete"), st.sampled_from(["data", "config", "method", "backbone"]), st.none())
    whole = st.tuples(st.just("replace"), st.just(""),
                      st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.text(max_size=5), st.none()))
    broken = st.tuples(st.just("text"), st.just(""), st.sampled_from(["", "{", "{\"data\": }", "\xff\xfe", "[1,"]))
    return st.one_of(change, missing, whole, broken)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=_malformed_config())
def test_malformed_config_json_is_reported_by_file_and_field_and_changes_nothing(mutation, finished_run, tmp_path,
                                                                                  capsys):
    action, key, value = mutation
    run = tmp_path / "run"
    if not run.exists():
        import shutil

        shutil.copytree(finished_run, run)
    original = json.loads((finished_run / "config.json").read_text())
    config_path = run / "config.json"
    if action == "text":
        config_path.write_bytes(value.encode("latin-1"))
    elif action == "replace":
        config_path.write_text(json.dumps(value))
    else:
        changed = dict(original)
        if action == "delete":
            del changed[key]
        else:
            changed[key] = value
        config_path.write_text(json.dumps(changed))
    before = _folder_digest(run)
    code = main(["train", "--out", str(run), "--resume", "--no-progress"])
    error = _one_line_error(capsys)
    assert code != 0, (mutation, error)
    assert str(config_path) in error, (mutation, error)
    if action in ("set", "delete"):
        assert f"'{key}" in error or f"field '{key}" in error or key in error, (mutation, error)
    assert _folder_digest(run) == before


def test_wrong_types_in_config_json_name_the_file_and_field_not_a_flag(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    config = json.loads((run / "config.json").read_text())
    config["epochs"] = "200"
    (run / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(run), "--resume"]) == 2
    error = _one_line_error(capsys)
    assert f"{run / 'config.json'}: field 'epochs': expected an integer" in error and "--epochs" not in error


# ----- resume and evaluation settings --------------------------------------------------------------
def test_no_progress_is_honoured_by_resume(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "1", "--steps", "20", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    config = json.loads((run / "config.json").read_text())
    config["epochs"] = 2  # a longer schedule would train: its bar shows unless --no-progress
    (run / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(run), "--resume", "--steps", "22", "--no-progress"]) == 0
    assert "step" not in capsys.readouterr().err


def test_eval_refuses_a_config_naming_another_method_than_the_checkpoints(finished_run, tmp_path, cifar10_root,
                                                                          capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    config = json.loads((run / "config.json").read_text())
    config["method"] = "byol"
    (run / "config.json").write_text(json.dumps(config))
    assert main(["eval", "knn", "--run", str(run), "--dataset", str(cifar10_root), "--device", "cpu"]) == 2
    error = _one_line_error(capsys)
    assert "names method 'byol'" in error and "trained with 'simclr'" in error
    assert not (run / "eval").exists()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["config"]["method"] == "simclr"


def test_progress_is_a_line_every_few_seconds_when_stderr_is_not_a_terminal(capsys):
    from training.progress import Lines, progress

    reporter = progress(100, "simclr sp", "step")  # pytest's captured stderr is not a terminal
    assert isinstance(reporter, Lines)
    reporter.every = 0.0  # every update prints, to see the lines
    reporter.update(25)
    reporter.set_postfix(loss="1.2345")
    reporter.update(25)
    reporter.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("simclr sp: 25/100 step (25%") and "s left" in lines[0]
    assert "loss 1.2345" in lines[1] and lines[-1].startswith("simclr sp: 50/100 step in ")
    assert "\r" not in "".join(lines)
    silent = progress(10, "quiet", "step", enabled=False)
    silent.update(10)
    silent.close()
    assert capsys.readouterr().err == ""
