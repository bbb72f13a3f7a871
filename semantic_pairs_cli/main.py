"""`semantic-pairs`: one command, a subcommand per job.

Each package owns its subcommands in `<package>/commands.py`, a module that imports only argparse
at import time, so `--help` stays fast and importing one job never drags in torch or gradio.
Errors meant for users carry an `exit_code` attribute: they are printed as one line naming the
file or field, never as a stack trace. So are OSErrors the machine or a path causes (a full disk,
a read-only file system, a file in the way), as a last resort behind the commands' own checks.
Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pair_manifest.errors import environment_error_message

# Order here is the order in `--help`: curate -> build/publish -> train/evaluate.
COMMAND_MODULES = (
    "pair_manifest.commands",
    "curation_app.commands",
    "curation_app.proposals.commands",
    "builders.commands",
    "training.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semantic-pairs",
        description="Curate, publish and benchmark semantic-pair datasets for self-supervised learning.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - only user errors are turned into messages
        exit_code = getattr(error, "exit_code", None)
        if exit_code is None:
            message = environment_error_message(error) if isinstance(error, OSError) else None
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            return 1
        print(f"error: {error}", file=sys.stderr)
        return int(exit_code)
    return int(result or 0)


def console() -> int:
    """The installed `semantic-pairs` command (and `python -m semantic_pairs_cli`)."""
    return main()


if __name__ == "__main__":
    raise SystemExit(console())
