"""`curate`, `users add` and `demo` (registered by `semantic_pairs_cli.main`). Only argparse and the
protocol's constants are imported here; Gradio and the rest load inside the handlers."""
from __future__ import annotations

import argparse

from pair_manifest.protocol import PAIRS_PER_CLASS


def register(subparsers) -> None:
    curate = subparsers.add_parser(
        "curate", help="run the annotation app (Gradio) on an images root",
        description="Serve the curation app: annotators pair images by keyboard in the browser (verify proposed "
                    "pairs, pick partners for an anchor, review others' decisions). Every decision is committed "
                    "to PROJECT/decisions.sqlite before the page moves on. Without --users the app listens on "
                    "127.0.0.1 only and everyone is the local user; any other --host needs --users.",
    )
    curate.add_argument("--images", required=True, metavar="ROOT", help="images root holding one folder per wnid")
    curate.add_argument("--project", required=True, metavar="DIR", help="curation project folder (created if new)")
    curate.add_argument("--classes", metavar="CSV", help="class selection (default: the 187 classes)")
    curate.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; anything else requires --users)")
    curate.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    curate.add_argument("--users", metavar="FILE", help="users file (`semantic-pairs users add`): login required")
    curate.add_argument("--target", type=int, default=PAIRS_PER_CLASS,
                         help=f"pairs wanted per class (default {PAIRS_PER_CLASS}, the paper's)")
    curate.set_defaults(handler=run_curate)

    users = subparsers.add_parser("users", help="manage annotator accounts of the curation app")
    actions = users.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add", help="add a user or change their password",
        description="Store a salted scrypt hash of NAME's password in FILE (mode 0600). The password is read "
                    "without echo from the terminal, or as one line from standard input when it is not a terminal.")
    add.add_argument("--users", required=True, metavar="FILE", help="users file (created if missing)")
    add.add_argument("name", metavar="NAME", help="user name: letters, digits, '.', '_' or '-'")
    add.set_defaults(handler=run_users_add)

    demo = subparsers.add_parser(
        "demo", help="the curation app on the bundled sample images (what `make demo` runs)",
        description="Run the curation app on sample_data/imagenet/train with the project folder ./demo_project, "
                    "computing proposals first when the project has none. "
                    "Open the printed URL; Ctrl-C stops it.")
    demo.add_argument("--project", default="demo_project", metavar="DIR", help="project folder (default ./demo_project)")
    demo.add_argument("--port", type=int, default=7860, help="port on 127.0.0.1 (default 7860; 0 picks a free one)")
    demo.set_defaults(handler=run_demo)


def configure_logging(project_dir) -> None:
    """Everything to PROJECT/curation.log; warnings and up also to the terminal."""
    import logging
    import sys
    import time
    from pathlib import Path

    log = logging.getLogger("curation_app")
    if any(getattr(h, "_curation", False) for h in log.handlers):
        return
    Path(project_dir).mkdir(parents=True, exist_ok=True)

    class LogFile(logging.FileHandler):
        """A full disk must not print a traceback per log line: one notice a minute instead."""

        last_notice = float("-inf")

        def handleError(self, record):  # noqa: N802 - logging's name
            if time.monotonic() - LogFile.last_notice > 60:
                LogFile.last_notice = time.monotonic()
                print(f"warning: {self.baseFilename}: cannot write the log ({sys.exc_info()[1]}); "
                      "lines are lost until it can", file=sys.stderr, flush=True)

    to_file = LogFile(Path(project_dir) / "curation.log", encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    to_terminal = logging.StreamHandler()
    to_terminal.setLevel(logging.WARNING)
    to_terminal.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    for handler in (to_file, to_terminal):
        handler._curation = True
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def check_project_folder(project) -> None:
    """The project folder must be writable (decisions are committed there): refuse at once, in one
    line, a file in the way, a read-only file system or a folder without write permission."""
    import tempfile

    from pair_manifest.errors import UserError

    if project.exists() and not project.is_dir():
        raise UserError(f"--project {project}: is a file; the project needs a folder there")
    try:
        project.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=project, prefix=".write-probe-"):
            pass
    except OSError as error:
        where = error.filename if error.filename and str(error.filename) != str(project) else project
        raise UserError(f"--project {project}: cannot write the project folder here "
                        f"({where}: {error.strerror or error})") from None


def start_app(images, project, *, classes=None, host="127.0.0.1", port=7860, users_file=None, target=PAIRS_PER_CLASS,
              banner_extra: str = "") -> int:
    from pathlib import Path

    from pair_manifest.classes import load_selection
    from pair_manifest.errors import UserError

    from curation_app.server import bind, create_app, local_annotator, login_required, serve, url_for
    from curation_app.users import UserBook

    if login_required(host, users_file) and users_file is None:
        raise UserError(f"--host {host}: the app would listen beyond 127.0.0.1, so it needs a login: pass --users "
                        "FILE (create it with `semantic-pairs users add --users FILE NAME`)")
    check_project_folder(Path(project))
    configure_logging(project)
    users = UserBook(users_file) if users_file else None  # warns (terminal and log) if others may read it
    selection = load_selection(classes)
    sock = bind(host, port)
    try:
        from curation_app.service import Curation

        curation = Curation(images, project, selection, target=target,
                            protected_files=(Path(users_file),) if users_file else ())
        local = None if users else local_annotator()
        app = create_app(curation, users=users, local_user=local, users_file=Path(users_file) if users_file else None)
        who = (f"login required ({len(users.names())} users in {users_file})" if users
               else f"no login (loopback only), you are '{local}'")
        listening = f" (listening on {host})" if host in ("0.0.0.0", "::") else ""
        banner = (f"curation app: {url_for(host, sock)}{listening} · {who} · {len(curation.catalog.wnids)} classes"
                  f" under {_shown_path(images)} · project {project}{banner_extra}\nPress Ctrl-C to stop.")
        serve(app, sock, banner=banner)
    finally:
        sock.close()
    print("curation app stopped; every acknowledged decision is in", Path(project) / "decisions.sqlite", flush=True)
    return 0


def _shown_path(path) -> str:
    import os

    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def run_curate(args: argparse.Namespace) -> int:
    return start_app(args.images, args.project, classes=args.classes, host=args.host, port=args.port,
                     users_file=args.users, target=args.target)


def read_password(name: str) -> str:
    import getpass
    import sys

    from pair_manifest.errors import UserError

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise UserError(f"password for {name}: the two entries differ; nothing changed")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def run_users_add(args: argparse.Namespace) -> int:
    from curation_app.users import add_user, check_name

    check_name(args.name)
    outcome = add_user(args.users, args.name, read_password(args.name))
    print(f"{outcome} user {args.name} in {args.users}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from pair_manifest.errors import UserError

    from curation_app.proposals.propose import propose

    images = Path(__file__).resolve().parents[1] / "sample_data" / "imagenet" / "train"
    if not images.is_dir():
        raise UserError(f"{images}: the bundled sample is missing (run from a checkout of the project)")
    project = Path(args.project)
    if (project / "proposals.parquet").is_file():
        extra = " · proposals from proposals.parquet"
    else:
        print(f"computing proposals for the sample into {project}/proposals.parquet ...", flush=True)
        try:
            print("\n".join(propose(images, project, progress=sys.stderr.isatty()).lines()), flush=True)
            extra = " · proposals computed"
        except UserError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            extra = " · proposals failed (see above); pairs are sampled"
    return start_app(images, project, host="127.0.0.1", port=args.port, banner_extra=extra)
