"""rtlgen's cache on disk: ``$RTLGEN_CACHE``, else ``~/.cache/rtlgen``.

Each kind of product has a folder of its own: ``batch/`` holds compiled
batch testbenches (:mod:`rtlgen.flows.batch_sim`), ``adder-graphs/`` the
shift-and-add graphs of constant layers (:mod:`rtlgen.ir.arithmetic`), so
that a rebuild, a sweep or a board build of the same weights does not search
for the graph again.  Entries are named by a hash of everything they depend
on; a missing, unreadable or damaged entry is computed again, and a cache
that cannot be written only makes rtlgen slower.  Removing the folder is
always safe.

Each kind's folder is kept under a size limit (:data:`LIMIT_MIB`, or
``$RTLGEN_CACHE_MIB`` for every kind): after a new entry is stored, the
entries used least recently are removed until the folder fits.  Entries used
in the last hour are never removed (another process may be about to read
them), and neither is the newest entry, so a limit of 0 keeps the entries
of the last hour only.  Leftovers of builds that stopped half-way (names
starting with a dot) are removed a day after they were last written.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path

from .errors import RtlgenError

__all__ = ["cache_dir", "load", "store", "used", "prune", "limit_bytes", "LIMIT_MIB"]

LIMIT_MIB = {"batch": 2048, "adder-graphs": 256}   # per kind; others: the batch limit
FRESH_S = 3600          # an entry used this recently stays
STALE_TEMP_S = 86400    # a dot-named leftover older than this goes


def cache_dir(kind: str) -> Path:
    """The folder of ``kind`` in the cache (not created here)."""
    base = os.environ.get("RTLGEN_CACHE") or str(Path.home() / ".cache" / "rtlgen")
    return Path(base) / kind


def limit_bytes(kind: str) -> int:
    """The size limit of ``kind``'s folder: ``$RTLGEN_CACHE_MIB`` MiB if set, else :data:`LIMIT_MIB`."""
    text = os.environ.get("RTLGEN_CACHE_MIB", "").strip()
    if not text:
        return LIMIT_MIB.get(kind, LIMIT_MIB["batch"]) << 20
    if not text.isdigit():
        raise RtlgenError(f"RTLGEN_CACHE_MIB must be a whole number of MiB (the size limit of each "
                          f"folder of rtlgen's cache), got {text!r}: set it to e.g. 2048, or unset it")
    return int(text) << 20


def load(kind: str, key: str):
    """The object stored under ``key`` in ``kind``, or None."""
    path = cache_dir(kind) / f"{key}.pickle"
    try:
        with open(path, "rb") as f:
            value = pickle.load(f)
    except Exception:       # missing, damaged or from an incompatible version: computed again
        return None
    used(path)
    return value


def store(kind: str, key: str, value) -> None:
    """Keep ``value`` under ``key`` in ``kind`` (written whole or not at all; errors are ignored),
    then keep the folder within its size limit."""
    folder = cache_dir(kind)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, folder / f"{key}.pickle")
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return
    prune(kind)


def used(entry: Path) -> None:
    """Mark a cache entry (file or folder) as just used: the last to be removed."""
    try:
        os.utime(entry)
    except OSError:
        pass


def _size(entry: Path) -> int:
    if not entry.is_dir() or entry.is_symlink():
        return entry.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(entry):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        try:
            entry.unlink()
        except OSError:
            pass


def prune(kind: str, limit: int | None = None, now: float | None = None) -> list[Path]:
    """Remove the least recently used entries of ``kind`` until its folder is within ``limit`` bytes
    (default :func:`limit_bytes`), and dot-named leftovers a day old.  Returns what was removed."""
    limit = limit_bytes(kind) if limit is None else limit
    now = time.time() if now is None else now
    folder = cache_dir(kind)
    removed: list[Path] = []
    entries = []
    try:
        children = list(folder.iterdir())
    except OSError:
        return removed
    for entry in children:
        try:
            mtime, size = entry.lstat().st_mtime, _size(entry)
        except OSError:     # removed by another process meanwhile
            continue
        if entry.name.startswith("."):
            if now - mtime > STALE_TEMP_S:
                _remove(entry)
                removed.append(entry)
            continue
        entries.append((mtime, entry, size))
    entries.sort(key=lambda e: (e[0], e[1].name))
    total = sum(size for _, _, size in entries)
    for mtime, entry, size in entries[:-1]:          # the newest entry always stays
        if total <= limit:
            break
        if now - mtime < FRESH_S:
            break                                     # the rest are newer still
        _remove(entry)
        removed.append(entry)
        total -= size
    return removed
