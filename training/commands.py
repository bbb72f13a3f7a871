"""Subcommands of this package (registered by `semantic_pairs_cli.main`)."""
from __future__ import annotations

import argparse

from pair_manifest.protocol import AUGMENTATIONS, BACKBONE, BACKBONES, BATCH_SIZE, EPOCHS, METHODS, RESOLUTION, STEMS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _epoch_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of epochs") from None


def register(subparsers) -> None:
    """Add this package's subcommands. Import heavy modules inside the handlers only."""
    p = subparsers.add_parser(
        "train", help="self-supervised pretraining on SP or AP (GPU: data, augmentation and step on the device)",
        description="Pretrain a backbone with a self-supervised method on a Semantic Pairs dataset (Hub id or "
                    f"local repo folder). Defaults follow the paper (§4): {BACKBONE}, {RESOLUTION}x{RESOLUTION}, "
                    f"batch {BATCH_SIZE}, {EPOCHS} epochs, "
                    "each method's original hyperparameters. Writes RUN_DIR/config.json, metrics.jsonl, "
                    "tensorboard/, checkpoints/last.pt, env.json. Under torchrun it runs DDP, one process per GPU.")
    # Every option defaults to None here: a resumed run must know which ones were actually given.
    p.add_argument("--data", help="Hub id (ORG/NAME) or local repo folder; for tiny_imagenet a train/<class>/ folder")
    p.add_argument("--config", help="sp, sp_100, sp_50, ap, ap_100, ap_50, or tiny_imagenet")
    p.add_argument("--method", choices=METHODS)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (new, or existing with --resume)")
    p.add_argument("--epochs", type=_positive_int, help=f"length of the schedule (default {EPOCHS}, paper §4)")
    p.add_argument("--batch-size", type=_positive_int, help=f"global batch of pairs (default {BATCH_SIZE}, paper §4)")
    p.add_argument("--resolution", type=_positive_int,
                   help=f"input side in pixels, also the cache's (default {RESOLUTION})")
    p.add_argument("--aug", choices=AUGMENTATIONS,
                   help="paper: crop, rotation, flip, colour jitter, grayscale (default); gray_s, color_jitter, "
                        "only_c: the paper's ablations (§4.4.1); method: paper plus the method's blur/solarization")
    p.add_argument("--backbone", choices=BACKBONES,
                   help=f"{BACKBONE} (default, paper); vit_s8 for DINO's ablation; small ones for tests")
    p.add_argument("--stem", choices=STEMS,
                   help="ResNet stem: imagenet (default; the paper's unmodified ResNet-50) or small (3x3, no max-pool)")
    p.add_argument("--steps", type=_positive_int, help="stop after N steps (smoke runs); the schedule stays --epochs'")
    p.add_argument("--seed", type=int, help="seed of weights, data order and augmentation (default 0)")
    p.add_argument("--hp", action="append", metavar="KEY=VALUE",
                   help="override one of the method's hyperparameters (repeatable), e.g. --hp temperature=0.2")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), help="default auto: CUDA when present")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), help="default auto: bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (first steps slower)")
    p.add_argument("--cuda-graphs", action="store_true", default=None,
                   help="GPU only: capture forward+backward+optimizer in one CUDA graph (single process, "
                        "methods that declare it safe)")
    p.add_argument("--checkpoint-every", type=_positive_int, metavar="STEPS", help="default: every 10 epochs")
    p.add_argument("--keep-epochs", type=_epoch_list, metavar="E1,E2", help="also keep the eval backbone at these epochs")
    p.add_argument("--log-every", type=_positive_int, metavar="STEPS", help="read losses back this often (default 50)")
    p.add_argument("--cache-dir", help="decoded-image cache (default $SEMANTIC_PAIRS_CACHE or ~/.cache/semantic_pairs/decoded)")
    p.add_argument("--workers", type=_positive_int, help="decode processes (default: all cores)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR from checkpoints/last.pt")
    p.set_defaults(handler=_train)

    from training.eval.commands import register_eval  # argparse-only modules, like this one
    from training.reproduce.commands import register_reproduce

    register_eval(subparsers)
    register_reproduce(subparsers)


def _train(args) -> int:
    import json
    import os
    import sys

    from training.config import TrainConfig, config_for_resume
    from training.errors import TrainingError
    from training.loop import train
    from training.run_dir import RunDir

    option_names = ("data", "config", "method", "epochs", "batch_size", "resolution", "aug", "backbone", "stem",
                    "steps", "seed", "hp", "device", "precision", "compile", "cuda_graphs", "checkpoint_every",
                    "keep_epochs", "log_every", "cache_dir", "workers", "progress")
    given = {name: getattr(args, name) for name in option_names if getattr(args, name) is not None}
    RunDir(args.out).check_is_folder()
    if args.resume:
        cfg = config_for_resume(args.out, given)
    else:
        missing = [f"--{n}" for n in ("data", "config", "method") if n not in given]
        if missing:
            raise TrainingError(f"{', '.join(missing)}: required for a new run (or pass --resume)")
        cfg = TrainConfig(out=args.out, **given)
    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary line, not one per process
        print(json.dumps(summary), file=sys.stdout)
    return 0
