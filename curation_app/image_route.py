"""The one route that serves images: `GET /img/<size>/<wnid>/<file name>`.

`size` is `thumb` (pick grid), `preview` (verify pair) or `original` (the file's own bytes, on
demand). The request names a class and a file, never a path: the class must be one of the
project's, the name an image name directly in that folder, and the resolved file must lie under
the images root (`pair_manifest.store.resolve_image`: no `..`, no absolute path, no symlink
leading out). Whatever the request, the project folder (decision store, work state, cache) and the
users file are never served. The path is decoded once by the server and never again, so
double-encoded traversal stays a literal, missing name. Refusals say why in one line and never
show a server path.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response

from pair_manifest.errors import UserError
from pair_manifest.file_ids import resolve_image
from pair_manifest.images import ImageReadError, is_image_name, probe

from curation_app.service import Curation

log = logging.getLogger("curation_app")

SIZES = ("thumb", "preview", "original")
CACHE_CONTROL = "private, max-age=3600"  # lets the page prefetch the next pair into the browser cache
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp"}


def _refuse(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(message + "\n", status_code=status, headers={"Cache-Control": "no-store"})


def add_image_route(app: FastAPI, curation: Curation) -> None:
    @app.get("/img/{size}/{rest:path}", include_in_schema=False)
    def image(size: str, rest: str, request: Request) -> Response:  # noqa: ARG001 - request kept for logs
        if size not in SIZES:
            return _refuse(404, f"size '{size}': use one of {', '.join(SIZES)}")
        if any(c in rest for c in ("%", "\\", "\x00")) or rest.startswith("/"):
            return _refuse(400, "expected img/<size>/<wnid>/<file name> (no encoded characters, no absolute path)")
        parts = rest.split("/")
        if len(parts) != 2 or parts[1] in ("", ".", ".."):
            return _refuse(400, "expected img/<size>/<wnid>/<file name>, a file directly in its class folder")
        wnid, name = parts
        if wnid not in curation.catalog:
            return _refuse(404, f"{wnid}: not a class of this project")
        if not is_image_name(name):
            return _refuse(404, f"{wnid}/{name}: not an image file name")
        file_id = f"{wnid}/{name}"
        try:
            path = resolve_image(curation.images_root, file_id)
        except UserError as error:
            reason = ("outside the images root" if "outside" in str(error) else
                      "a file name longer than a file system allows" if "longer than" in str(error) else
                      "no such image")
            log.warning("image route refused %r: %s", rest[:300], reason)
            return _refuse(403 if reason.startswith("outside") else 404, f"{file_id[:80]}: {reason}")
        real = path.resolve()
        if curation.catalog.protected(real):  # checked before anything opens the file
            log.warning("image route refused %r: a project or users file", rest)
            return _refuse(403, f"{file_id}: not an image of this project")
        bad = curation.work.bad_images(wnid)
        if file_id in bad:
            return _refuse(422, f"{file_id}: cannot be shown ({bad[file_id]})")
        headers = {"Cache-Control": CACHE_CONTROL}
        try:
            if size == "original":
                media_type = MEDIA_TYPES.get(probe(real).format, "application/octet-stream")
                return FileResponse(real, media_type=media_type, headers=headers)
            data = curation.previews.get(real, file_id, size)
        except ImageReadError as error:
            note = curation.catalog.mark_bad(wnid, file_id, f"{error.reason}: {error.detail}")
            return _refuse(422, note)
        except OSError as error:
            return _refuse(404, f"{file_id}: cannot be read ({error.strerror or error})")
        return Response(data, media_type="image/jpeg", headers=headers)
