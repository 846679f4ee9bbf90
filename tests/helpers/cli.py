"""Running ``rtlgen`` (in the test's process or as a subprocess), writing its configuration files,
reading its errors."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import yaml


def cli_argv(*args) -> list[str]:
    """The command line running ``rtlgen`` with *args* under this interpreter."""
    return [sys.executable, "-m", "rtlgen.cli", *map(str, args)]


def run_cli(*args, env=None, timeout=None, **kw) -> subprocess.CompletedProcess:
    """Run ``rtlgen *args`` (paths allowed) and capture its text output.

    The command runs in this process (``rtlgen.cli.main``, as the console
    script calls it, with ``sys.stdout``/``sys.stderr`` captured), which spares
    the interpreter start and rtlgen's imports (about 1.2 s a command), unless
    *env* (which then replaces the whole environment), *timeout* or further
    ``subprocess.run`` arguments (``cwd``...) are given: then it is a subprocess.
    tests/test_readme.py and the signal, umask and concurrency tests run
    ``rtlgen`` as a process of its own too.
    """
    if env is not None or timeout is not None or kw:
        return subprocess.run(cli_argv(*args), capture_output=True, text=True, env=env, timeout=timeout, **kw)
    return _run_in_process([str(a) for a in args])


def _run_in_process(argv: list[str]) -> subprocess.CompletedProcess:
    """``rtlgen argv`` through ``rtlgen.cli.main`` with its exit status and text output."""
    from rtlgen import cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:           # argparse: --help, --version, usage errors
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
            code = 1 if isinstance(exc.code, str) else (exc.code or 0)
    return subprocess.CompletedProcess(cli_argv(*argv), code, out.getvalue(), err.getvalue())


def write_config(path: Path, cfg: dict) -> Path:
    """Write *cfg* as YAML to *path*; return *path*."""
    path.write_text(yaml.safe_dump(cfg))
    return path


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("rtlgen: error:")]


def one_error_line(res: subprocess.CompletedProcess) -> str:
    """The single ``rtlgen: error:`` line of a failed command (exit 2, no traceback)."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    errors = error_lines(res.stderr)
    assert len(errors) == 1, res.stderr
    return errors[0]


def assert_one_line_error(res: subprocess.CompletedProcess) -> str:
    """Exit 2, one ``rtlgen: error:`` line, nothing after it but other ``rtlgen:`` lines."""
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    errors = error_lines(res.stderr)
    assert len(errors) == 1, res.stderr
    stray = [line for line in res.stderr.splitlines() if line.strip() and not line.startswith("rtlgen: ")]
    assert not stray, res.stderr
    return errors[0]
