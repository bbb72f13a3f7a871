"""`semantic-pairs eval linear|knn|finetune|detection --run RUN_DIR --dataset D`.

Imports only argparse at import time; each handler imports what it needs.
"""
from __future__ import annotations

import argparse

DATASET_HELP = ("cifar10 | cifar100 | stl10 (the Hub copies uoft-cs/cifar10, uoft-cs/cifar100, tanganke/stl10), "
                "a local folder with train/<class>/ and test/<class>/, or any Hub id / local Parquet "
                "folder that datasets.load_dataset reads")


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in _floats(text))


def _common(parser: argparse.ArgumentParser, dataset_help: str = DATASET_HELP) -> None:
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="a training run folder (config.json, checkpoints/last.pt)")
    parser.add_argument("--dataset", required=True, metavar="D", help=dataset_help)
    parser.add_argument("--device", default="auto", help="auto (the GPU when present), cpu, cuda, cuda:N")
    parser.add_argument("--workers", type=int, default=None, help="image-decoding processes (default: by dataset size)")


def _columns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-column", default=None, help="image column of a Hub dataset (default: img or image)")
    parser.add_argument("--label-column", default=None, help="label column of a Hub dataset (default: label or fine_label)")


def register_eval(subparsers) -> None:
    """Add `eval` and its four kinds to the `semantic-pairs` command."""
    parser = subparsers.add_parser(
        "eval", help="evaluate a pretrained run: linear probe, kNN, fine-tuning, VOC detection",
        description="Evaluate a run's backbone (paper §4). Writes RUN_DIR/eval/<kind>-<dataset>.json.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    linear = kinds.add_parser("linear", help="frozen features + logistic regression (weight decay swept on held-out train)")
    _common(linear)
    _columns(linear)
    linear.add_argument("--batch-size", type=int, default=256, help="images per forward pass when computing features")
    linear.add_argument("--weight-decays", type=_floats, default=None,
                        help="comma-separated sweep (default 1e-6,...,1: one fit each, best on held-out train)")
    linear.set_defaults(handler=_frozen)

    knn = kinds.add_parser("knn", help="frozen features + weighted kNN (k=20, T=0.07, cosine; DINO)")
    _common(knn)
    _columns(knn)
    knn.add_argument("--batch-size", type=int, default=256, help="images per forward pass when computing features")
    knn.add_argument("--k", type=int, default=20, help="neighbours that vote (DINO: 20)")
    knn.add_argument("--temperature", type=float, default=0.07, help="vote weight exp(sim/T) (DINO: 0.07)")
    knn.set_defaults(handler=_frozen)

    finetune = kinds.add_parser("finetune", help="train the whole network + a linear head (Table 4: DINO ViT-S/8)")
    _common(finetune)
    _columns(finetune)
    finetune.add_argument("--epochs", type=int, default=100, help="not given by the paper (default 100)")
    finetune.add_argument("--batch-size", type=int, default=256)
    finetune.add_argument("--lr", type=float, default=5e-4, help="AdamW lr per 512 images (DeiT), scaled with the batch")
    finetune.add_argument("--weight-decay", type=float, default=0.05, help="DeiT: 0.05")
    finetune.add_argument("--warmup-epochs", type=int, default=5, help="DeiT: 5")
    finetune.add_argument("--label-smoothing", type=float, default=0.1, help="DeiT: 0.1")
    finetune.add_argument("--seed", type=int, default=0)
    finetune.set_defaults(handler=_finetune)

    detection = kinds.add_parser("detection", help="Faster R-CNN R50-C4 on VOC07+12 trainval -> VOC07 test (Table 3)")
    _common(detection, "a VOCdevkit folder (VOC2007/ [+ VOC2012/]) or a Hub id / Parquet folder with "
                       "image and objects{bbox, category, difficult} columns")
    detection.add_argument("--iterations", type=int, default=24_000, help="MoCo v2's VOC schedule: 24k (about 23 epochs)")
    detection.add_argument("--batch-size", type=int, default=16, help="images per iteration (lr scales with it)")
    detection.add_argument("--lr", type=float, default=0.02, help="SGD lr for a batch of 16 (detectron2/MoCo)")
    detection.add_argument("--min-sizes", type=_ints, default=None, help="training shorter edges (default 480,512,...,800)")
    detection.add_argument("--test-size", type=int, default=800, help="testing shorter edge (default 800)")
    detection.add_argument("--max-size", type=int, default=1333, help="longest edge (default 1333)")
    detection.add_argument("--classes", default=None,
                           help="comma-separated class names of a non-VOC dataset in VOC format (default: the 20 VOC classes)")
    detection.add_argument("--seed", type=int, default=0)
    detection.set_defaults(handler=_detection)


def _print(kind: str, result: dict, path) -> int:
    if kind == "detection":
        summary = f"AP {100 * result['AP']:.2f}  AP50 {100 * result['AP50']:.2f}  AP75 {100 * result['AP75']:.2f}"
    else:
        summary = f"top-1 {100 * result['top1']:.2f}%"
        if "weight_decay" in result:
            summary += f" (weight decay {result['weight_decay']:g})"
    print(f"{kind} {result['dataset']}: {summary} -> {path}")
    return 0


def _frozen(args) -> int:
    from training.eval.classify import evaluate_frozen
    from training.eval.linear import WEIGHT_DECAYS

    options = {}
    if args.kind == "linear":
        options["weight_decays"] = args.weight_decays or WEIGHT_DECAYS
    else:
        options.update(k=args.k, temperature=args.temperature)
    result, path = evaluate_frozen(args.kind, args.run, args.dataset, args.device, args.batch_size, args.workers,
                                   args.image_column, args.label_column, **options)
    return _print(args.kind, result, path)


def _finetune(args) -> int:
    from training.eval.finetune import FinetuneHyperparameters, finetune

    hp = FinetuneHyperparameters(epochs=args.epochs, batch_size=args.batch_size, base_lr=args.lr,
                                 weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                                 label_smoothing=args.label_smoothing, seed=args.seed)
    result, path = finetune(args.run, args.dataset, hp, args.device, args.workers, args.image_column, args.label_column)
    return _print("finetune", result, path)


def _detection(args) -> int:
    from training.eval.detection import DetectionHyperparameters, detection_eval

    defaults = DetectionHyperparameters()
    hp = DetectionHyperparameters(
        iterations=args.iterations, batch_size=args.batch_size, base_lr=args.lr,
        min_sizes_train=args.min_sizes or defaults.min_sizes_train, min_size_test=args.test_size,
        max_size=args.max_size, seed=args.seed,
    )
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else None
    result, path = detection_eval(args.run, args.dataset, hp, args.device, args.workers, classes)
    return _print("detection", result, path)
