"""The `propose` subcommand (registered by `semantic_pairs_cli.main`)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add `propose`. Import heavy modules inside the handler only."""
    parser = subparsers.add_parser(
        "propose", help="rank candidate pairs per class for the curation app (verify mode)",
        description="Embed every usable image (cached by SHA-256 in DIR/embeddings.sqlite, so a re-run "
                    "embeds only new or changed files and an interrupted run resumes), drop near-duplicates, "
                    "score pairs for 'same object, different context' and match each image at most once per "
                    "class. Images of accepted pairs are left out and decided pairs are never proposed "
                    "again; a class whose files and decisions did not change keeps its proposals. Writes "
                    "DIR/proposals.parquet (wnid, file_a, file_b, score, rank, embedder). One propose per "
                    "project at a time: a second one is refused (exit 75).",
    )
    parser.add_argument("--images", required=True, metavar="ROOT", help="images root holding one folder per wnid")
    parser.add_argument("--project", required=True, metavar="DIR", help="curation project folder (created if needed)")
    parser.add_argument("--classes", metavar="CSV",
                        help="class selection (default: the project's own, else the 187 classes)")
    parser.add_argument("--embedder", default="pixels", metavar="SPEC",
                        help="pixels (default: no weights, offline), torchvision:NAME[@WEIGHTS_FILE] or timm:NAME "
                             "(pretrained weights fetched once into torch's or the Hugging Face cache), "
                             "or checkpoint:RUN_DIR (a run of `semantic-pairs train`)")
    parser.add_argument("--offline", action="store_true", default=None,
                        help="download nothing: use only weights already cached (also HF_HUB_OFFLINE=1)")
    parser.add_argument("--per-class", type=int, default=None, metavar="N",
                        help="at most N pairs per class (default: as many as the matching finds)")
    parser.add_argument("--context-weight", type=float, default=None, metavar="W",
                        help="weight of 'different context' against 'same object' in the score (default 0.3): "
                             "higher gives more varied backgrounds and fewer pairs of one real object kind")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="decoding processes (default: all cores)")
    parser.set_defaults(handler=run_propose)


def run_propose(args: argparse.Namespace) -> int:
    from curation_app.proposals.propose import propose

    summary = propose(args.images, args.project, classes=args.classes, embedder=args.embedder,
                      per_class=args.per_class, workers=args.workers, progress=True, offline=args.offline,
                      context_weight=args.context_weight)
    print("\n".join(summary.lines()))
    return 0
