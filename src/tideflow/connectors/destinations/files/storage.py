"""Atomic file commits on a local directory or an fsspec URL.

No partial file is ever visible under its final name: locally a file is written under a hidden
temporary name in the same directory, fsynced, renamed, and the directory fsynced; for other
fsspec targets the file is written locally, then uploaded to its final name (object stores
make an upload visible only once complete).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec

TEMP_MARK = ".tmp-"
_STALE_TEMP_SECONDS = 3600

Writer = Callable[[str], None]  # writes a complete file at the given local path


class Storage:
    """Where files go; one per destination instance (not thread-safe)."""

    def __init__(self, url: str) -> None:
        self.url = url
        fs, root = fsspec.core.url_to_fs(url)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        self.local = "file" in protocols or "local" in protocols
        self.fs: Any = fs
        self.root = root.rstrip("/")

    def ensure_root(self) -> None:
        if self.local:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        else:
            self.fs.makedirs(self.root, exist_ok=True)

    def names(self, folder: str) -> list[str]:
        """File names in ``folder`` (relative to the root); removes stale local temp files."""
        path = f"{self.root}/{folder}"
        if self.local:
            if not os.path.isdir(path):
                return []
            names = os.listdir(path)
            now = time.time()
            for n in names:
                if n.startswith(".") and TEMP_MARK in n:
                    full = os.path.join(path, n)
                    with contextlib.suppress(OSError):
                        if now - os.stat(full).st_mtime > _STALE_TEMP_SECONDS:
                            os.unlink(full)
            return [n for n in names if not n.startswith(".")]
        if not self.fs.exists(path):
            return []
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]

    def commit(self, folder: str, name: str, write: Writer) -> str:
        """Write a file with ``write`` and make it visible as ``folder/name`` atomically."""
        if self.local:
            return self._commit_local(folder, name, write)
        with tempfile.TemporaryDirectory(prefix="tideflow-") as tmp:
            local = os.path.join(tmp, name)
            write(local)
            target = f"{self.root}/{folder}/{name}"
            self.fs.makedirs(f"{self.root}/{folder}", exist_ok=True)
            self.fs.put_file(local, target)
            return str(target)

    def _commit_local(self, folder: str, name: str, write: Writer) -> str:
        directory = os.path.join(self.root, folder)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{name}{TEMP_MARK}{uuid.uuid4().hex[:8]}")
        target = os.path.join(directory, name)
        try:
            write(tmp)
            _fsync_path(tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_path(directory)  # the rename itself must survive a crash
        return target


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SEQ = re.compile(r"^(\d{16})-")


def max_sequence(names: list[str], prefix: str) -> int:
    """The highest write sequence among file names ``<prefix><seq>-...`` (-1 when none)."""
    best = -1
    for n in names:
        if prefix and not n.startswith(prefix):
            continue
        m = _SEQ.match(n[len(prefix) :])
        if m:
            best = max(best, int(m.group(1)))
    return best
