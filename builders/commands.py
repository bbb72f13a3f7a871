"""`build`, `verify`, `publish`, `materialize`: the release subcommands (registered by
`semantic_pairs_cli.main`). Only argparse and the protocol constants are imported here; each handler
imports its module."""
from __future__ import annotations

import argparse

from pair_manifest.protocol import PAIRS_PER_CLASS


def register(subparsers) -> None:
    build = subparsers.add_parser(
        "build", help="pair manifest + images -> release folder (SP, AP, subsets, manifests, card)",
        description="Build the Hugging Face dataset folder: configs sp (default), sp_100, sp_50, ap, ap_100, "
                    "ap_50, sp_manifest, ap_manifest; images embedded as their original bytes. Every referenced "
                    "file is checked against its SHA-256 before anything is written; an interrupted build "
                    "resumes; the output folder appears only when complete.",
    )
    build.add_argument("--manifest", required=True, metavar="DIR", help="pair manifest folder (pairs.parquet)")
    build.add_argument("--images", required=True, metavar="ROOT", help="images root holding <wnid>/ folders")
    build.add_argument("--out", default="semantic_pairs", metavar="REPO_DIR",
                       help="release folder (default: semantic_pairs, so load_dataset('semantic_pairs', 'sp') "
                            "works from its parent folder)")
    build.add_argument("--pairs-per-class", type=int, default=PAIRS_PER_CLASS, metavar="N",
                       help=f"pairs per class in the release: the first N by rank_in_class (default {PAIRS_PER_CLASS}, "
                            "the paper's)")
    build.add_argument("--ap-source", choices=("pair_a", "random"), default="pair_a",
                       help="AP images: the image_a of each SP pair (default: one photo per pair, half of SP's "
                            "photos, as the paper's AP set) or a seeded random draw from each class folder")
    build.add_argument("--seed", type=int, default=0, help="seed of --ap-source random (default 0)")
    build.add_argument("--allow-short", action="store_true",
                       help="build even when classes have fewer pairs than --pairs-per-class (they are listed)")
    build.add_argument("--workers", type=int, default=None, help="parallel shard writers (default: cores, up to 8)")
    build.set_defaults(handler=run_build)

    verify = subparsers.add_parser(
        "verify", help="check a release folder or Hub repo (exit 1 listing every problem)",
        description="Load every config as users do and check counts per class and tier, ranks, no image reused "
                    "within a class, embedded bytes against the SHA-256s, that every image decodes, and that "
                    "README.md is the card rendered from the data.",
    )
    verify.add_argument("target", metavar="TARGET", help="release folder, or a Hub dataset repo id ORG/NAME")
    verify.add_argument("--manifest", metavar="DIR", help="also compare with the pair manifest it was built from")
    verify.add_argument("--images", metavar="ROOT", help="also compare the embedded bytes with the files here")
    verify.add_argument("--workers", type=int, default=2, help="threads hashing and decoding images (default 2)")
    verify.set_defaults(handler=run_verify)

    publish = subparsers.add_parser(
        "publish", help="upload a release folder to a Hub dataset repo (one commit; unchanged -> no commit)",
        description="create_repo, one commit with the changed files and the deletion of stale ones, then the "
                    "gating settings. The token comes from HF_TOKEN or `hf auth login` and is never printed.",
    )
    publish.add_argument("repo_dir", metavar="REPO_DIR", help="release folder written by `semantic-pairs build`")
    publish.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="Hub dataset repo to publish to")
    publish.add_argument("--private", action="store_true", help="make the repo private")
    publish.add_argument("--gated", choices=("manual", "auto"),
                         help="require users to accept the ImageNet terms (manual: you approve each request)")
    publish.add_argument("--manifest-only", action="store_true",
                         help="publish only the manifest configs and their card: no pixels, freely shareable")
    publish.set_defaults(handler=run_publish)

    materialize = subparsers.add_parser(
        "materialize", help="manifest release + your ImageNet copy -> the full release folder",
        description="Rebuild the full release, byte-identical to the maintainer's, from the manifest configs "
                    "(a release folder, its manifest/ folder, or a Hub repo id) and your own ImageNet-1K train "
                    "folder. Every missing or differing file is listed before anything is written.",
    )
    materialize.add_argument("source", metavar="MANIFEST_DIR_OR_ID", help="manifest release: folder or ORG/NAME")
    materialize.add_argument("--imagenet", required=True, metavar="ROOT",
                             help="your ImageNet-1K train folder (ROOT/<wnid>/<file>.JPEG)")
    materialize.add_argument("--out", default="semantic_pairs", metavar="REPO_DIR",
                             help="release folder to write (default: semantic_pairs)")
    materialize.add_argument("--workers", type=int, default=None, help="parallel shard writers (default: cores, up to 8)")
    materialize.set_defaults(handler=run_materialize)


def _progress() -> bool:
    import sys

    return sys.stderr.isatty()


def _print_result(result, verb: str) -> None:
    plan = result.plan
    print(f"{verb} {result.out}: {plan.sp.num_rows} pairs, {plan.ap.num_rows} AP images, "
          f"{len(plan.classes)} classes, {result.shards} image shards ({result.image_bytes / 1e6:.1f} MB of images"
          + (f"; {result.resumed} shard(s) kept from an interrupted run" if result.resumed else "") + ")")


def run_build(args: argparse.Namespace) -> int:
    from builders.build import build_release
    from builders.plan import BuildSettings

    settings = BuildSettings(args.pairs_per_class, args.ap_source, args.seed)
    result = build_release(args.manifest, args.images, args.out, settings, allow_short=args.allow_short,
                           workers=args.workers, progress=_progress())
    for line in result.plan.shortfalls:
        print(f"short (--allow-short): {line}")
    _print_result(result, "built")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from pair_manifest.errors import ProblemsFound
    from builders.verify import verify_release

    report = verify_release(args.target, manifest_dir=args.manifest, images_root=args.images,
                            workers=args.workers, progress=_progress())
    counts = ", ".join(f"{name} {rows}" for name, rows in report.rows.items())
    print(f"{report.target}: {'manifest release' if report.manifest_only else 'release'}; rows per config: {counts}; "
          f"{report.images_checked} embedded images hashed and decoded")
    if report.problems:
        raise ProblemsFound(f"{report.target}: verification failed", report.problems)
    print(f"{report.target}: verified")
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from builders.publish import publish_release

    result = publish_release(args.repo_dir, args.repo_id, private=args.private, gated=args.gated,
                             manifest_only=args.manifest_only, progress=_progress())
    if result.committed:
        print(f"published {args.repo_dir} to {result.repo_id} at commit {result.commit}: "
              f"{len(result.uploaded)} file(s) uploaded, {len(result.deleted)} deleted")
    else:
        print(f"{result.repo_id} already holds this release at commit {result.commit}: nothing uploaded, no commit")
    if args.gated:
        print(f"{result.repo_id}: access gated ({args.gated} approval)")
    return 0


def run_materialize(args: argparse.Namespace) -> int:
    from builders.materialize import materialize

    result = materialize(args.source, args.imagenet, args.out, workers=args.workers, progress=_progress())
    _print_result(result, "materialized")
    return 0
