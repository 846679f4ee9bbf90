"""Running ``rtlgen`` as a subprocess, writing its configuration files, reading its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml


def cli_argv(*args) -> list[str]:
    """The command line running ``rtlgen`` with *args* under this interpreter."""
    return [sys.executable, "-m", "rtlgen.cli", *map(str, args)]


def run_cli(*args, env=None, cwd=None, timeout=None, **kw) -> subprocess.CompletedProcess:
    """Run ``rtlgen *args`` (paths allowed) and capture its text output.

    *env* replaces the whole environment (``None``: this process's).
    """
    return subprocess.run(cli_argv(*args), capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
                          **kw)


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
