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
import importlib.abc
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
    """The installed `semantic-pairs` command (and `python -m semantic_pairs_cli`): one
    subcommand in a process of its own."""
    if sys.argv[1:2] == ["build"]:
        _without_pandas()
    return main()


def _without_pandas() -> None:
    """Make pandas impossible to import in this process, before anything imports it.

    pyarrow imports pandas (0.2-0.5 s on the 2-core VM of benchmarks/build_throughput.py, which
    prints it) the first time it converts any Python value, only to ask whether that value is a
    pandas object; when the import fails it carries on without. A build never has a pandas
    object, and a 1 GB build takes about 2 s. Only where the process is ours alone: anything that uses pandas
    afterwards in the same process would fail."""
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _RefusePandas())


class _RefusePandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (this command runs without pandas)", name=name)
        return None


if __name__ == "__main__":
    raise SystemExit(console())
