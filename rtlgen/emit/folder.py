"""Build folders that rtlgen owns: what it may replace, what it must keep.

The contract (also in the README, "Build folders"):

- ``rtlgen build -o DIR`` writes into ``DIR`` only when ``DIR`` does not
  exist, is an empty folder, or holds rtlgen's marker file
  :data:`MARKER` (``.rtlgen-build.json``), written by an earlier build.  Any
  other folder is refused (exit 2), whatever files it holds: a user's
  ``manifest.json`` does not make a folder rtlgen's.
- The marker lists the files the build wrote and the results that later
  commands (``lint``, ``synth``, ``report``, ``faults``) wrote into the
  folder, each result with the identity (a hash of the Verilog and the
  quantized model) of the core it was made from.
- A rebuild replaces the files of the previous build and keeps every file
  that rtlgen did not write (the user's model, configuration, notes).  It
  never overwrites a file that the previous build did not write; it refuses
  instead.  Results of the previous core are kept when the new core is
  identical, and removed (and named on stderr) when it differs, so that no
  report or synthesis result describes a core that is no longer there.
- A symbolic link ``-o`` is followed: the folder it points to is written and
  the link stays.
- Builds and result writers that target one folder are serialized by a lock
  file next to it (``.DIR.rtlgen-lock``, removed afterwards), so that
  concurrent builds end one after the other, each complete.
- A new folder is written under a temporary name and renamed into place; an
  existing folder gets each file by an atomic rename, with SIGINT and SIGTERM
  held back until the marker is final.  A folder whose marker says
  ``"state": "writing"`` was cut off (power loss, SIGKILL) and is reported as
  incomplete by every reader.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .. import __version__
from ..errors import RtlgenError
from .atomic import current_umask

__all__ = ["MARKER", "commit_build", "check_output_folder", "record_result", "folder_lock", "core_identity", "check_complete",
           "CommitReport", "resolve_output"]

MARKER = ".rtlgen-build.json"
MARKER_TAG = "rtlgen build folder"
MARKER_FORMAT = 1
_TMP_PREFIX = ".rtlgen-tmp-"


def core_identity(files: dict[str, str | bytes]) -> str:
    """A hash of a build's files (name and content), independent of their order."""
    h = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        h.update(name.encode() + b"\0")
        h.update(data.encode() if isinstance(data, str) else data)
        h.update(b"\0")
    return h.hexdigest()


def resolve_output(outdir) -> Path:
    """The folder an ``-o`` names: a symbolic link is followed (to its final target)."""
    path = Path(outdir)
    if path.is_symlink():
        return Path(os.path.realpath(path))
    return Path(os.path.abspath(path))


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock for ``folder`` (a lock file beside it, removed on release)."""
    folder = Path(folder)
    lock_path = folder.parent / f".{folder.name}.rtlgen-lock"
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RtlgenError(f"cannot create the lock file {lock_path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # another holder may have removed the file between our open and our lock
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM (delivered on exit) while a folder is being switched over."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def read_marker(folder: Path) -> dict | None:
    """The marker of an rtlgen build folder, or None when ``folder`` has none (or a foreign file)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("tag") != MARKER_TAG:
        return None
    if not isinstance(data.get("files"), list) or not isinstance(data.get("results", {}), dict):
        return None
    return data


def _write_marker(folder: Path, marker: dict) -> None:
    tmp = folder / f"{_TMP_PREFIX}marker"
    tmp.write_text(json.dumps(marker, indent=1) + "\n")
    os.replace(tmp, folder / MARKER)


def check_complete(folder) -> None:
    """Raise when ``folder``'s marker says a build was cut off while it was written."""
    marker = read_marker(Path(folder))
    if marker is not None and marker.get("state") != "complete":
        raise RtlgenError(f"build folder {folder} is incomplete (a build was cut off while writing it): "
                          "run 'rtlgen build' again")


@dataclass
class CommitReport:
    """What a build did to its folder."""
    folder: Path
    created: bool
    removed_results: list[str] = field(default_factory=list)
    kept_results: list[str] = field(default_factory=list)


def _listing(folder: Path, limit: int = 4) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _check_target(outdir, folder: Path) -> dict | None:
    """The existing marker (None for a new or empty folder); raise for a folder rtlgen may not write."""
    if not folder.exists():
        if Path(outdir).is_symlink():
            return None          # a dangling link: its target is created
        return None
    if not folder.is_dir():
        raise RtlgenError(f"output {outdir} exists and is not a folder: choose another -o")
    marker = read_marker(folder)
    if marker is not None:
        return marker
    entries = [p for p in folder.iterdir() if not p.name.startswith(_TMP_PREFIX)]
    if not entries:
        return None
    hint = (" (it has a manifest.json but no rtlgen marker: if it is a build of an older rtlgen, remove it)"
            if (folder / "manifest.json").exists() else "")
    raise RtlgenError(f"output folder {outdir} exists and is not an rtlgen build folder: it holds "
                      f"{_listing(folder)}{hint}; choose another -o or an empty folder")


def check_output_folder(outdir) -> None:
    """Raise the error :func:`commit_build` would raise for a folder rtlgen may not write, before a long
    command spends its time (the commit checks again, under the lock)."""
    _check_target(outdir, resolve_output(outdir))


def _write_files(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)


def _remove_result(folder: Path, rel: str, entry: dict) -> None:
    """Delete the files a result recorded (only those), then its folders if they became empty."""
    base = folder / rel
    for name in entry.get("files", []):
        path = base / name if name else base
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            path.unlink()
    if base.is_dir():
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
    parent = base.parent
    while parent != folder and folder in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


def _new_marker(files: list[str], identity: str, results: dict, state: str) -> dict:
    return {"tag": MARKER_TAG, "format": MARKER_FORMAT, "rtlgen": __version__, "state": state,
            "core": identity, "files": sorted(files), "results": results}


def commit_build(outdir, files: dict[str, str | bytes]) -> CommitReport:
    """Write ``files`` (name -> content) as the build in the folder ``outdir``, by the contract above."""
    for name in files:
        if "/" in name or name.startswith(".") or name in ("", MARKER):
            raise ValueError(f"build file names are plain names: {name!r}")
    folder = resolve_output(outdir)
    identity = core_identity(files)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RtlgenError(f"cannot create the output folder {outdir}: {exc.strerror or exc}") from None
    with folder_lock(folder):
        old = _check_target(outdir, folder)
        try:
            if not folder.exists():
                return _commit_new(folder, files, identity)
            return _commit_into(outdir, folder, files, identity, old)
        except OSError as exc:
            raise RtlgenError(f"cannot write the build folder {outdir}: {exc.strerror or exc}") from None


def _commit_new(folder: Path, files: dict, identity: str) -> CommitReport:
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        _write_files(tmp, files)
        _write_marker(tmp, _new_marker(list(files), identity, {}, "complete"))
        os.chmod(tmp, 0o777 & ~current_umask())      # mkdtemp makes 0700
        try:
            os.rename(tmp, folder)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise RtlgenError(f"output folder {folder} appeared while the build was written "
                                  "(by another program): build again") from None
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CommitReport(folder=folder, created=True)


def _commit_into(outdir, folder: Path, files: dict, identity: str, old: dict | None) -> CommitReport:
    old_files = set(old["files"]) if old else set()
    old_results = dict(old.get("results", {})) if old else {}
    for name in files:
        path = folder / name
        if (path.exists() or path.is_symlink()) and name not in old_files:
            raise RtlgenError(f"build would overwrite {path}, which rtlgen did not write: move it away, "
                              "or build into another -o")
        if path.is_dir() and not path.is_symlink():
            raise RtlgenError(f"build would replace the folder {path}: move it away, or build into another -o")
    stale = {rel: entry for rel, entry in old_results.items() if entry.get("core") != identity}
    kept = {rel: entry for rel, entry in old_results.items() if rel not in stale}
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=folder))
    try:
        _write_files(tmp, files)
        with _signals_held():
            # the marker first says "writing" and lists every file that may be rtlgen's
            _write_marker(folder, _new_marker(sorted(old_files | set(files)), identity, old_results, "writing"))
            for name in files:
                os.replace(tmp / name, folder / name)
            for name in old_files - set(files):
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
            for rel, entry in stale.items():
                _remove_result(folder, rel, entry)
            _write_marker(folder, _new_marker(list(files), identity, kept, "complete"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return CommitReport(folder=folder, created=False, removed_results=sorted(stale), kept_results=sorted(kept))


def record_result(outdir, rel: str) -> None:
    """Record that rtlgen wrote the result ``rel`` (a file or a folder) in the build folder ``outdir``.

    The files it holds now are listed with the identity of the current core,
    so a rebuild of a different core removes exactly these files.  A folder
    without a marker (not an rtlgen build) is left as it is.
    """
    folder = resolve_output(outdir)
    if read_marker(folder) is None:
        return
    with folder_lock(folder):
        marker = read_marker(folder)
        if marker is None or marker.get("state") != "complete":
            return
        base = folder / rel
        if base.is_dir():
            listed = sorted(str(Path(dirpath, f).relative_to(base))
                            for dirpath, _dirs, names in os.walk(base) for f in names)
        elif base.exists():
            listed = [""]
        else:
            return
        results = dict(marker.get("results", {}))
        results[rel] = {"core": marker.get("core"), "files": listed}
        marker["results"] = results
        try:
            _write_marker(folder, marker)
        except OSError as exc:
            print(f"rtlgen: warning: cannot record {rel} in {folder / MARKER}: {exc.strerror or exc}",
                  file=sys.stderr)
