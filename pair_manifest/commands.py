"""`scan`, `manifest export|validate|stats|merge|import`: the data-model subcommands."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    scan = subparsers.add_parser(
        "scan", help="report usable and rejected images under ROOT/<wnid>/",
        description="Walk ROOT/<wnid>/ and report, per class, the usable images and every rejected "
                    "file with its reason. Exit 0 whenever the scan itself worked.",
    )
    scan.add_argument("root", help="images root holding one folder per wnid (ImageNet train layout)")
    scan.add_argument("--classes", metavar="CSV", help="class selection (default: the 187 classes)")
    scan.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    scan.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    scan.set_defaults(handler=run_scan)


def run_scan(args: argparse.Namespace) -> int:
    import json
    import sys

    from pair_manifest.classes import load_selection
    from pair_manifest.scan import scan_root

    report = scan_root(args.root, load_selection(args.classes), workers=args.workers,
                       progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    print(f"{'wnid':<10} {'name':<28} {'usable':>7} {'rejected':>8}")
    for c in report.classes.values():
        print(f"{c.wnid:<10} {c.name[:28]:<28} {len(c.usable):>7} {len(c.rejected):>8}")
    total = sum(len(c.usable) for c in report.classes.values())
    print(f"{len(report.classes)} classes, {total} usable images, {len(report.rejected)} rejected, "
          f"{len(report.ignored)} ignored, {len(report.missing)} selected classes missing")
    for path, reason in report.rejected:
        print(f"rejected  {path}: {reason}")
    for path, reason in report.ignored:
        print(f"ignored   {path}: {reason}")
    return 0
