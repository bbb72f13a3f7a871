"""`semantic-pairs reproduce NAME [--smoke] [--runs DIR] [--out DIR]`.

Imports nothing heavy at import time; the handler imports the runner.
"""
from __future__ import annotations

NAMES = ("figure4", "table1", "table2", "table3", "table4", "table5", "figure5")


def register_reproduce(subparsers) -> None:
    parser = subparsers.add_parser(
        "reproduce", help="regenerate one of the paper's tables/figures: train what is missing, evaluate, compare",
        description="Reads training/reproduce/experiment_files/NAME.yaml, reuses finished runs under --runs, trains the "
                    "missing ones, evaluates them and writes OUT/NAME.md, .csv and .png with the paper's numbers "
                    "and the deltas. --smoke runs the same chain on the bundled sample on CPU in minutes.",
    )
    parser.add_argument("name", choices=NAMES, metavar="NAME", help=" | ".join(NAMES))
    parser.add_argument("--smoke", action="store_true",
                        help="tiny backbone, a handful of steps, bundled sample data (CIFAR-10 sample stands in for "
                             "CIFAR-100/STL-10); the output says plainly that it is a smoke run")
    parser.add_argument("--runs", default=None, metavar="DIR", help="where runs live (default runs/; --smoke: runs/smoke/)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where NAME.md/.csv/.png go (default results/; --smoke: results/smoke/)")
    parser.add_argument("--data", default=None, metavar="REPO_OR_DIR",
                        help="the SP/AP dataset (Hub id or local repo folder) for runs that must be trained")
    parser.add_argument("--tiny-imagenet", default=None, metavar="DIR",
                        help="Tiny-ImageNet (a folder with train/<wnid>/, or a Hub id) for Table 2's missing run")
    parser.add_argument("--voc", default=None, metavar="DIR", help="a VOCdevkit folder (VOC2007 + VOC2012) for Table 3")
    parser.add_argument("--device", default=None, help="auto (the GPU when present; the default), cpu, cuda; "
                                                      "--smoke defaults to cpu")
    parser.add_argument("--only", default=None, metavar="SUBSTRING",
                        help="only the rows whose label contains this (e.g. SimCLR), for partial reproductions")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and evaluations it would do, and stop")
    parser.set_defaults(handler=_reproduce)


def _reproduce(args) -> int:
    from training.reproduce.runner import reproduce

    return reproduce(args.name, smoke=args.smoke, runs=args.runs, out=args.out, data=args.data, device=args.device,
                     only=args.only, dry_run=args.dry_run, tiny_imagenet=args.tiny_imagenet, voc=args.voc)
