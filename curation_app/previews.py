"""Display-sized JPEGs of the images, made once and cached (memory, then `PROJECT/cache/`).

A full-resolution ImageNet photo is decoded with Pillow's draft mode (JPEG scaled by 1/2, 1/4 or
1/8 while decoding), turned upright (EXIF orientation, for display only) and re-encoded at the
size the page shows it. The cache key holds the file's size and modification time, so a changed
file gets a new preview. The original bytes stay available through the image route.
"""
from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path

from pair_manifest.atomic import write_atomically
from pair_manifest.errors import environment_error_message
from pair_manifest.images import open_rgb

log = logging.getLogger("curation_app")

SIZES = {"thumb": 256, "preview": 768}  # longest side in pixels: pick grid / verify pair
JPEG_QUALITY = {"thumb": 80, "preview": 85}
MEMORY_BYTES = 128 * 1024 * 1024  # ~2,000 previews of ~60 KB


class Previews:
    def __init__(self, cache_dir: str | Path, *, memory_bytes: int = MEMORY_BYTES):
        self.cache_dir = Path(cache_dir)
        self.memory_bytes = memory_bytes
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._making: dict[str, threading.Lock] = {}
        self._last_disk_warning = float("-inf")

    def get(self, path: Path, file_id: str, size: str) -> bytes:
        """JPEG bytes of `path` at `size` ('thumb' or 'preview'); raises ImageReadError."""
        stat = path.stat()
        key = hashlib.sha1(f"{size}\n{file_id}\n{stat.st_mtime_ns}\n{stat.st_size}".encode()).hexdigest()
        data = self._from_memory(key)
        if data is not None:
            return data
        with self._lock:
            making = self._making.setdefault(key, threading.Lock())
        with making:  # one decode per preview, however many requests ask at once
            data = self._from_memory(key)
            if data is None:
                disk = self.cache_dir / size / key[:2] / f"{key}.jpg"
                try:
                    data = disk.read_bytes()
                except OSError:  # not made yet (or the cache cannot be read): make it
                    data = render(path, file_id, size)
                    self._keep_on_disk(disk, data)
                self._remember(key, data)
        with self._lock:
            self._making.pop(key, None)
        return data

    def _keep_on_disk(self, disk: Path, data: bytes) -> None:
        """The disk copy only spares a later decode: a full or read-only disk costs speed, never
        the preview (logged once a minute, not per image)."""
        try:
            write_atomically(disk, lambda handle: handle.write(data))
        except OSError as error:
            now = time.monotonic()
            if now - self._last_disk_warning > 60:
                self._last_disk_warning = now
                log.warning("previews are not cached on disk: %s", environment_error_message(error) or error)

    def _from_memory(self, key: str) -> bytes | None:
        with self._lock:
            data = self._memory.get(key)
            if data is not None:
                self._memory.move_to_end(key)
            return data

    def _remember(self, key: str, data: bytes) -> None:
        with self._lock:
            if key in self._memory:
                return
            self._memory[key] = data
            self._held += len(data)
            while self._held > self.memory_bytes and self._memory:
                _, old = self._memory.popitem(last=False)
                self._held -= len(old)


def render(path: Path, file_id: str, size: str) -> bytes:
    image = open_rgb(path, name=file_id, max_side=SIZES[size], exif_transpose=True)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY[size])
    return buffer.getvalue()
