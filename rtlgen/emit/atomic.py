"""Atomic file and folder replacement: outputs appear whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replace_dir", "temp_file_for", "write_text_atomic", "current_umask"]


def current_umask() -> int:
    """The process umask (read without changing it where /proc tells it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_dir(tmp: Path, dest: Path) -> None:
    """Move the finished folder ``tmp`` to ``dest``, replacing what was there."""
    tmp, dest = Path(tmp), Path(dest)
    os.chmod(tmp, 0o777 & ~current_umask())     # mkdtemp makes 0700
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def temp_file_for(path, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path``; it replaces ``path`` on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())     # mkstemp makes 0600; give what open() would
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text_atomic(path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file."""
    with temp_file_for(path) as tmp:
        Path(tmp).write_bytes(data) if isinstance(data, bytes) else Path(tmp).write_text(data)
