"""`scan`, `manifest export|validate|stats|merge|import`: the data-model subcommands."""
from __future__ import annotations

import argparse

from pair_manifest.protocol import PAIRS_PER_CLASS


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
    register_manifest(subparsers)


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
        print(f"{c.wnid:<10} {c.name[:28]:<28} {len(c.usable) if not c.unreadable else '?':>7} "
              f"{len(c.rejected):>8}")
    total = sum(len(c.usable) for c in report.classes.values())
    print(f"{len(report.classes)} classes, {total} usable images, {len(report.rejected)} rejected, "
          f"{len(report.ignored)} ignored, {len(report.missing)} selected classes missing"
          + (f", {len(report.unreadable)} class folder(s) unreadable" if report.unreadable else ""))
    for path, reason in report.unreadable:
        print(f"unreadable {path}: {reason}")
    for path, reason in report.rejected:
        print(f"rejected  {path}: {reason}")
    for path, reason in report.ignored:
        print(f"ignored   {path}: {reason}")
    return 0


def register_manifest(subparsers) -> None:
    manifest = subparsers.add_parser(
        "manifest", help="export, validate, inspect, merge or import pair manifests",
        description="The pair manifest is the Parquet artifact of a curation: pairs.parquet (one row "
                    "per accepted pair) and decisions.parquet (the full decision log).",
    )
    actions = manifest.add_subparsers(dest="action", metavar="ACTION", required=True)

    export = actions.add_parser("export", help="project decision store -> manifest folder")
    export.add_argument("--project", required=True, metavar="DIR", help="curation project folder")
    export.add_argument("--out", required=True, metavar="DIR", help="manifest folder to write")
    export.add_argument("--classes", metavar="CSV", help="class selection (default: the project's own)")
    export.set_defaults(handler=run_export)

    validate = actions.add_parser("validate", help="list every problem of a manifest (exit 1 if any)")
    validate.add_argument("path", metavar="PATH", help="manifest folder or pairs.parquet")
    validate.add_argument("--images", metavar="ROOT", help="images root: also check every file's bytes and structure")
    validate.add_argument("--pixels", action="store_true",
                          help="with --images: also decode every image and check that no pair is one photo twice "
                               "(slower; for manifests made outside this toolkit, whose hashes were never checked)")
    validate.set_defaults(handler=run_validate)

    stats = actions.add_parser("stats", help="progress per class, annotator, tag; review agreement; proposals")
    stats.add_argument("path", metavar="PATH", help="manifest folder, pairs.parquet or curation project folder")
    stats.add_argument("--target", type=int, default=PAIRS_PER_CLASS,
                       help=f"pairs wanted per class (default {PAIRS_PER_CLASS}, the paper's)")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=run_stats)

    merge = actions.add_parser("merge", help="merge manifests; conflicts are reported, never dropped")
    merge.add_argument("inputs", nargs="+", metavar="MANIFEST", help="two or more manifest folders")
    merge.add_argument("--out", required=True, metavar="DIR", help="merged manifest folder")
    merge.set_defaults(handler=run_merge)

    imports = actions.add_parser("import", help="CSV of pairs curated elsewhere -> manifest (validated)")
    imports.add_argument("csv", metavar="CSV", help="columns wnid,file_a,file_b[,tags,annotator]; tags split by |")
    imports.add_argument("--images", required=True, metavar="ROOT", help="images root the files are relative to")
    imports.add_argument("--out", required=True, metavar="DIR", help="manifest folder to write")
    imports.add_argument("--classes", metavar="CSV", help="class selection (default: the 187 classes)")
    imports.set_defaults(handler=run_import)


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pair_manifest.classes import load_selection
    from pair_manifest.errors import UserError
    from pair_manifest.manifest import export_store
    from pair_manifest.store import STORE_FILE, DecisionStore

    if not (Path(args.project) / STORE_FILE).is_file():
        raise UserError(f"{args.project}: no {STORE_FILE} here (is it a curation project folder?)")
    store = DecisionStore.for_project(args.project)
    manifest = export_store(store, args.out, load_selection(args.classes) if args.classes else None)
    print(f"wrote {args.out}/pairs.parquet ({manifest.pairs.num_rows} pairs) and "
          f"decisions.parquet ({manifest.decisions.num_rows} decisions)")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    import sys

    from pair_manifest.errors import ProblemsFound, UserError
    from pair_manifest.validate import validate_manifest

    if args.pixels and not args.images:
        raise UserError("--pixels: needs --images ROOT (the images to decode)")
    problems = validate_manifest(args.path, args.images, pixels=args.pixels, progress=sys.stderr.isatty())
    if problems:
        raise ProblemsFound(f"{args.path}: invalid", problems)
    unchecked = ("files not checked: pass --images ROOT" if not args.images else
                 "pixels not decoded: pass --pixels to also check decoding and near-duplicates" if not args.pixels
                 else "")
    print(f"{args.path}: valid" + (f" ({unchecked})" if unchecked else ""))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pair_manifest.classes import imagenet_classes
    from pair_manifest.manifest import manifest_decisions
    from pair_manifest.stats import compute_stats, format_stats
    from pair_manifest.validate import read_valid_manifest
    from pair_manifest.store import STORE_FILE, DecisionStore

    if (Path(args.path) / STORE_FILE).is_file():
        decisions = DecisionStore.for_project(args.path).decisions()
    else:
        decisions = manifest_decisions(read_valid_manifest(args.path, "no statistics"))
    names = {w: c.name for w, c in imagenet_classes().items()}
    stats = compute_stats(decisions, target=args.target, class_names=names)
    print(json.dumps(stats.to_json(), indent=2) if args.json else format_stats(stats))
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from pair_manifest.merge import CONFLICTS_FILE, merge_manifests

    conflicts = merge_manifests(args.inputs, args.out)
    print(f"wrote merged manifest to {args.out}")
    if conflicts:
        for c in conflicts:
            print(f"conflict: {c.origin} decision {c.seq} ({c.verdict} {c.file_a} + {c.file_b} by {c.annotator}): "
                  f"{c.reason}")
        print(f"{len(conflicts)} conflict(s) kept out of the merge, listed in {args.out}/{CONFLICTS_FILE}")
        return 1
    return 0


def run_import(args: argparse.Namespace) -> int:
    import sys

    from pair_manifest.classes import load_selection
    from pair_manifest.importer import import_pairs

    manifest = import_pairs(args.csv, args.images, args.out, load_selection(args.classes),
                            progress=sys.stderr.isatty())
    print(f"imported {manifest.pairs.num_rows} pairs into {args.out}")
    return 0
