"""rtlgen's cache on disk: ``$RTLGEN_CACHE``, else ``~/.cache/rtlgen``.

Each kind of product has a folder of its own: ``batch/`` holds compiled
batch testbenches (:mod:`rtlgen.flows.batch_sim`), ``adder-graphs/`` the
shift-and-add graphs of constant layers (:mod:`rtlgen.ir.arithmetic`), so
that a rebuild, a sweep or a board build of the same weights does not search
for the graph again.  Entries are named by a hash of everything they depend
on; a missing, unreadable or damaged entry is computed again, and a cache
that cannot be written only makes rtlgen slower.  Removing the folder is
always safe.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

__all__ = ["cache_dir", "load", "store"]


def cache_dir(kind: str) -> Path:
    """The folder of ``kind`` in the cache (not created here)."""
    base = os.environ.get("RTLGEN_CACHE") or str(Path.home() / ".cache" / "rtlgen")
    return Path(base) / kind


def load(kind: str, key: str):
    """The object stored under ``key`` in ``kind``, or None."""
    try:
        with open(cache_dir(kind) / f"{key}.pickle", "rb") as f:
            return pickle.load(f)
    except Exception:       # missing, damaged or from an incompatible version: computed again
        return None


def store(kind: str, key: str, value) -> None:
    """Keep ``value`` under ``key`` in ``kind`` (written whole or not at all; errors are ignored)."""
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
        pass
