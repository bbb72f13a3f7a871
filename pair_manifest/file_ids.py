"""File ids: how a photo is named everywhere (the store, manifests, releases, proposals).

An id is exactly `<wnid>/<file name>`, relative to an images root: the label comes from the
folder, never from the name. A pair is unordered, so it is kept in one canonical order and has a
stable id. `resolve_image` is the one way from an id to a path, refusing anything that would
leave the images root.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from pair_manifest.errors import UserError

MAX_NAME_BYTES = 255  # NAME_MAX of Linux, macOS and Windows file systems


def canonical_pair(file_a: str, file_b: str) -> tuple[str, str]:
    return (file_a, file_b) if file_a <= file_b else (file_b, file_a)


def pair_id(file_a: str, file_b: str) -> str:
    """Stable id of an unordered pair: the same two files always give the same id."""
    a, b = canonical_pair(file_a, file_b)
    return hashlib.sha256(f"{a}\n{b}".encode()).hexdigest()[:16]


def check_file_id(wnid: str, file: str) -> None:
    """A file id is exactly `<wnid>/<name>`: no other folder, no traversal, no absolute path."""
    parts = file.split("/")
    if len(parts) != 2 or parts[0] != wnid or parts[1] in ("", ".", "..") or "\\" in file or "\x00" in file:
        raise UserError(f"{file!r}: expected '{wnid}/<file name>' (a file directly in its class folder)")


def resolve_image(images_root: str | Path, file: str) -> Path:
    """The path of a `<wnid>/<name>` id, refusing traversal and symlinks that leave the root."""
    wnid = file.split("/", 1)[0]
    check_file_id(wnid, file)
    name_bytes = len(file.split("/", 1)[1].encode("utf-8", "surrogateescape"))
    if name_bytes > MAX_NAME_BYTES:
        raise UserError(f"{file[:60]}…: the file name is {name_bytes} bytes, longer than a file system allows "
                        f"({MAX_NAME_BYTES}); no such image under {images_root}")
    try:
        root = _real_root(str(images_root))
        path = Path(root, file)
        real = os.path.realpath(path)
        if not real.startswith(root.rstrip(os.sep) + os.sep):
            raise UserError(f"{file}: resolves outside the images root")
        if not os.path.isfile(real):
            raise UserError(f"{file}: no such image under {images_root}")
    except OSError as error:
        raise UserError(f"{file}: cannot be read under {images_root} ({error.strerror or error})") from None
    return path


@lru_cache(maxsize=64)
def _real_root(images_root: str) -> str:
    return os.path.realpath(images_root)
