"""Reading and writing the arrays of ``rtlgen predict``, ``sim`` and ``tmr-analysis``.

:func:`load_array` reads one numeric array from a ``.npy`` file and, for
anything else (a CSV or other text file, an ``.npz`` archive, an array of
Python objects or strings, a damaged file), raises one
:class:`~rtlgen.errors.RtlgenError` saying what the file is and what is
expected.  :func:`save_array` writes exactly the path given (``numpy.save``
would add ``.npy`` to a name without it), through a temporary file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .emit.atomic import temp_file_for
from .emit.folder import MARKER, read_marker
from .errors import RtlgenError

__all__ = ["load_array", "save_array", "check_output"]

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _describe_non_npy(path: Path, head: bytes) -> str:
    """What a file that is not a .npy file seems to be, and what to do about it."""
    if head.startswith(_ZIP_MAGIC):
        try:
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
        except Exception:   # noqa: BLE001 - any damaged zip: say what it looks like
            names = []
        if names:
            shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
            return (f"{path} is a NumPy .npz archive (arrays: {shown}), not a .npy file: save the one "
                    f"array to use, e.g. np.save('x.npy', np.load('{path.name}')['{names[0]}'])")
        return f"{path} is a zip archive, not a NumPy .npy file: save the array with numpy.save"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        first = text.strip().splitlines()[0][:40]
        return (f"{path} is a text file (it starts with {first!r}), not a NumPy .npy file: convert it, "
                f"e.g. np.save('x.npy', np.loadtxt('{path.name}', delimiter=','))")
    return f"{path} is not a NumPy .npy file: save the array with numpy.save"


def load_array(path) -> np.ndarray:
    """Read one numeric array from a .npy file; anything else is a user error saying what the file is."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(256)
    except IsADirectoryError:
        raise RtlgenError(f"input {path} is a folder: give a .npy file") from None
    except OSError as exc:
        raise RtlgenError(f"cannot read input array {path}: {exc.strerror or exc}") from None
    if not head.startswith(_NPY_MAGIC):
        raise RtlgenError(_describe_non_npy(p, head))
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise RtlgenError(f"{path} holds Python objects (dtype object), not numbers: save a numeric "
                              "array (e.g. np.save(path, data.astype(np.float64)))") from None
        raise RtlgenError(f"cannot read input array {path}: the .npy file is damaged ({exc})") from None
    except (OSError, EOFError) as exc:
        raise RtlgenError(f"cannot read input array {path}: the .npy file is damaged ({exc})") from None
    if arr.dtype.kind not in "iuf":
        raise RtlgenError(f"{path} holds {arr.dtype} values ({_DTYPE_KINDS.get(arr.dtype.kind, 'not numbers')}); "
                          "inputs must be a numeric array: floats, or integer codes with --raw")
    return arr


_DTYPE_KINDS = {"U": "text", "S": "bytes", "b": "booleans", "c": "complex numbers", "V": "records",
                "M": "dates", "m": "time spans", "O": "Python objects"}


def _is_npy(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(_NPY_MAGIC)) == _NPY_MAGIC
    except OSError:
        return False


def _in_build_folder(path: Path) -> bool:
    """Whether ``path`` is one of the files a build wrote (listed in its folder's marker)."""
    marker = read_marker(path.parent)
    return marker is not None and (path.name == MARKER or path.name in marker.get("files", []))


def check_output(path, protected=()) -> None:
    """Raise unless ``path`` may take a result array: a new file, or an existing ``.npy`` file (an
    earlier result).  Links, special files, other files, the files in ``protected`` (the inputs) and a
    build folder's own files are refused.  Called before the work, so that nothing is computed in vain."""
    p = Path(path)
    if p.is_dir() or str(path).endswith(("/", os.sep)):
        raise RtlgenError(f"-o {path} is a folder: give the file to write, e.g. {p / 'out.npy'}")
    if not p.parent.is_dir():
        raise RtlgenError(f"cannot write {path}: the folder {p.parent} does not exist")
    if p.is_symlink() or (p.exists() and not p.is_file()):
        raise RtlgenError(f"-o {path} is a link or a special file, which rtlgen does not replace: "
                          "give the name of a new file")
    if _in_build_folder(p):
        raise RtlgenError(f"-o {path} is a file of the build folder {p.parent}: write results elsewhere")
    if p.exists() and not _is_npy(p):
        raise RtlgenError(f"-o {path} exists and is not a .npy file: rtlgen writes a new file or replaces "
                          "an earlier .npy result, never another file; give another name")
    for guarded in protected:
        if guarded is not None and p.exists() and Path(guarded).exists() and os.path.samefile(guarded, p):
            raise RtlgenError(f"-o {path} is the input file: give another name for the results")


def save_array(path, arr: np.ndarray, protected=()) -> None:
    """Write ``arr`` to exactly ``path`` (no suffix added), through a temporary file (see
    :func:`check_output` for what may be replaced)."""
    check_output(path, protected)
    p = Path(path)
    try:
        with temp_file_for(p, ".npy") as tmp, open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=arr.dtype == object)
    except OSError as exc:
        raise RtlgenError(f"cannot write {path}: {exc.strerror or exc}") from None
