"""Verilator lint of generated cores.

:func:`lint` runs ``verilator --lint-only -Wall`` on a core's Verilog.  The
Verilog is written by Amaranth through Yosys' ``write_verilog``, whose
style trips a few Verilator warnings that say nothing about the design.
Those, and only those, are waived; every waiver lives in :data:`WAIVERS`
with the reason it is safe.  A waiver with ``matches`` patterns covers only
the messages whose text matches one of them (Verilator ``lint_off
-match``), so the same rule still fires elsewhere.  The waivers are written to a Verilator
configuration file (``waivers.vlt``) next to the log, which also lets a
user rerun the exact check by hand.

Anything else Verilator reports is an error: :func:`lint` raises
:class:`~rtlgen.errors.RtlgenError` naming the first findings and the log.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..emit.atomic import replace_dir
from ..emit.folder import record_result
from ..errors import RtlgenError
from ..kinds import load_build
from .tools import ensure_verilator, run_group

__all__ = ["Waiver", "WAIVERS", "LintMessage", "lint", "lint_build", "waiver_config"]


@dataclass(frozen=True)
class Waiver:
    """A Verilator warning accepted on generated code.

    ``rule`` is the warning code; ``matches`` (optional) Verilator wildcards
    (``*``, ``?``) on the message text that limit the waiver to those
    messages (empty: the whole rule); ``reason`` says why the warning is
    harmless here.
    """
    rule: str
    matches: tuple[str, ...]
    reason: str


#: Operators that Yosys prints with operands narrower than the operation.
_EXTENDED_OPERATORS = ("ADD", "SUB", "MUL", "MULS", "NEGATE", "EQ", "NEQ", "LT", "LTS", "LTE", "LTES",
                       "GT", "GTS", "GTE", "GTES")

#: The only lint waivers of the project.
WAIVERS: tuple[Waiver, ...] = (
    Waiver("DECLFILENAME", (),
           "Amaranth writes a core and all its submodules into the one file <top>.v and names "
           "the submodules <top>.<instance path>, so module and file names differ by design."),
    Waiver("PROCASSINIT", (),
           "write_verilog declares every register with its reset value (reg x = 0;) so that "
           "simulation starts in the state the Amaranth design specifies, and then assigns it "
           "in an always block; that initial value is intended."),
    Waiver("UNUSEDSIGNAL", (),
           "Amaranth emits a named wire for every array element, port alias and intermediate "
           "value of the design (kept for waveform debugging), and Yosys temporaries ($N) "
           "carry bits a consumer does not read; such wires are unused by design."),
    Waiver("WIDTHEXPAND", tuple(f"Operator {op} expects*" for op in _EXTENDED_OPERATORS),
           "Yosys prints arithmetic and comparison cells whose operands are narrower than the "
           "operation; Verilog widens them to the expression width ($signed operands by sign "
           "extension), which is exactly the cell's meaning.  Only these operators are waived: "
           "width mismatches in assignments, muxes and bitwise logic are still reported."),
    Waiver("WIDTHTRUNC", ("Logical operator LOGNOT expects 1 bit*",),
           "Yosys prints a zero test (x == 0) of a multi-bit value as !x, which is that test."),
)

_MESSAGE = re.compile(
    r"^%(?P<severity>Warning|Error)(?:-(?P<rule>[A-Z0-9_]+))?:\s*"
    r"(?:(?P<file>[^:\s]+):(?P<line>\d+):(?:(?P<col>\d+):)?\s*)?(?P<text>.*)$")
_SUMMARY = re.compile(r"^Exiting due to \d+ (warning|error)")


@dataclass(frozen=True)
class LintMessage:
    """One Verilator finding."""
    severity: str          # "Warning" or "Error"
    rule: str | None       # e.g. "WIDTHEXPAND"; None for a plain error
    file: str | None
    line: int | None
    text: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file else ""
        code = f"-{self.rule}" if self.rule else ""
        return f"%{self.severity}{code}: {where}{self.text}"


def waiver_config(waivers=WAIVERS) -> str:
    """The Verilator configuration (.vlt) text that applies ``waivers``."""
    lines = ["`verilator_config", "// rtlgen lint waivers for generated Verilog (see rtlgen/flows/lint.py)"]
    for w in waivers:
        lines.append("// " + w.reason)
        if not w.matches:
            lines.append(f"lint_off -rule {w.rule}")
        for pattern in w.matches:
            lines.append(f'lint_off -rule {w.rule} -file "*" -match "{pattern}"')
    return "\n".join(lines) + "\n"


def parse_messages(output: str) -> list[LintMessage]:
    """Verilator findings in ``output`` (continuation lines are skipped)."""
    found = []
    for raw in output.splitlines():
        m = _MESSAGE.match(raw.strip())
        if not m:
            continue
        text = m.group("text").strip()
        if m.group("severity") == "Error" and m.group("rule") is None and _SUMMARY.match(text):
            continue
        found.append(LintMessage(m.group("severity"), m.group("rule"), m.group("file"),
                                 int(m.group("line")) if m.group("line") else None, text))
    return found




def _tail_text(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def lint(verilog_path, top: str, *, logdir=None, strict: bool = True,
         waivers=WAIVERS, timeout: float | None = 600) -> list[LintMessage]:
    """Lint ``verilog_path`` (top module ``top``) with ``verilator --lint-only -Wall``.

    The command, its output and the waiver file go to ``logdir`` (default:
    ``lint/`` beside the Verilog file), replaced as a whole.  Returns the
    findings that no waiver covers.  With ``strict`` (the default) any such
    finding raises :class:`RtlgenError` naming the log file, so a returned
    list is empty.
    """
    verilog_path = Path(verilog_path)
    if not verilog_path.is_file():
        raise RtlgenError(f"cannot lint {verilog_path}: no such file (run 'rtlgen build' first)")
    exe = ensure_verilator(compile=False)
    logdir = Path(logdir) if logdir is not None else verilog_path.resolve().parent / "lint"
    try:
        logdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{logdir.name}.", suffix=".tmp", dir=logdir.parent))
    except OSError as exc:
        raise RtlgenError(f"cannot create the lint folder {logdir}: {exc.strerror or exc}") from None
    try:
        vlt = tmp / "waivers.vlt"
        vlt.write_text(waiver_config(waivers))
        # run inside the lint folder, so the logged command can be rerun from there
        argv = [str(exe), "--lint-only", "-Wall", "--top-module", top, vlt.name, str(verilog_path.resolve())]
        try:
            proc = run_group(argv, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RtlgenError(f"verilator lint of {verilog_path} did not finish in {timeout:.0f} s") from None
        except OSError as exc:
            raise RtlgenError(f"cannot run verilator ({exe}): {exc}") from None
        output = proc.stdout + proc.stderr
        (tmp / "verilator.log").write_text(
            f"$ cd {logdir.resolve()} && " + " ".join(argv) + "\n" + output + f"\n[exit status {proc.returncode}]\n")
        replace_dir(tmp, logdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log = logdir / "verilator.log"
    findings = parse_messages(output)
    if proc.returncode != 0 and not findings:
        raise RtlgenError(f"verilator failed on {verilog_path} (exit {proc.returncode}) without a "
                          f"lint message; see {log}", detail=_tail_text(output))
    if findings and strict:
        shown = "\n".join(str(f) for f in findings[:20])
        more = f"\n... and {len(findings) - 20} more" if len(findings) > 20 else ""
        first = str(findings[0]).replace("\n", " ")
        raise RtlgenError(f"verilator lint of {verilog_path} found {len(findings)} problem(s) "
                          f"that are not waived, first: {first}; full log: {log}",
                          detail=f"{shown}{more}")
    return findings


def lint_build(outdir, *, strict: bool = True) -> list[LintMessage]:
    """Lint the core of build folder ``outdir``; the log goes to ``OUTDIR/lint/``."""
    manifest, _ = load_build(outdir)
    outdir = Path(outdir)
    try:
        return lint(outdir / manifest["verilog"], manifest["top"], logdir=outdir / "lint", strict=strict)
    finally:
        record_result(outdir, "lint")
