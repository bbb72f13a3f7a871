"""`eval linear` and `eval knn`: one run, one dataset, features computed once and shared."""
from __future__ import annotations

import time
from pathlib import Path

from training.eval.datasets import open_dataset
from training.eval.features import cached_features, pick_device
from training.eval.knn import K, TEMPERATURE, knn_eval
from training.eval.linear import WEIGHT_DECAYS, linear_probe
from training.eval.results import environment, write_result
from training.eval.runs import load_run


def evaluate_frozen(kind: str, run_dir: str | Path, dataset: str, device: str = "auto",
                    batch_size: int = 256, workers: int | None = None, image_column: str | None = None,
                    label_column: str | None = None, weight_decays=WEIGHT_DECAYS, k: int = K,
                    temperature: float = TEMPERATURE) -> tuple[dict, Path]:
    """Evaluate a run's frozen backbone by `linear` probe or `knn`; returns (result, json path)."""
    started = time.perf_counter()
    run = load_run(run_dir)
    data = open_dataset(dataset, image_column, label_column)
    target = pick_device(device)
    loaded = time.perf_counter()
    train, train_cached = cached_features(run, data, "train", target, batch_size, workers)
    test, test_cached = cached_features(run, data, "test", target, batch_size, workers)
    extracted = time.perf_counter()
    num_classes = len(data.classes)
    if kind == "linear":
        result = linear_probe(train, test, num_classes, target, weight_decays)
    elif kind == "knn":
        result = knn_eval(train, test, num_classes, target, k, temperature)
    else:
        raise ValueError(f"kind: {kind!r} is not linear or knn")
    result["timing"] = {"load_seconds": round(loaded - started, 3), "feature_seconds": round(extracted - loaded, 3),
                        "fit_seconds": round(time.perf_counter() - extracted, 3)}
    result.update({
        "kind": kind, "dataset": data.name, "run": str(run.run_dir), "checkpoint_sha256": run.checkpoint_sha256,
        "resolution": run.resolution, "feature_dim": int(train.x.shape[1]), "num_classes": num_classes,
        "num_train": int(train.x.shape[0]), "num_test": int(test.x.shape[0]),
        "features_from_cache": bool(train_cached and test_cached),
        "seconds": round(time.perf_counter() - started, 3), **environment(target),
    })
    return result, write_result(run.run_dir, kind, data.slug, result)
