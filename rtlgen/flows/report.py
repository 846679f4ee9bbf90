"""Resource and latency report of a build folder.

:func:`report` gathers the manifest of a build folder and the synthesis
reports found under ``OUTDIR/synth/<target>/`` and writes

``OUTDIR/report.md``
    per-layer table (shape, element types, reuse factor, multipliers,
    latency contribution, II), totals (latency in cycles, and in ns at the
    Fmax of every place-and-route run, II, throughput) and the synthesis
    resources of every target;
``OUTDIR/report.json``
    the same figures as data;
``OUTDIR/report.png``
    multipliers and latency per layer and, when synthesis reports exist,
    LUTs / FFs / DSP blocks per target (needs matplotlib; skipped with a
    note otherwise).

Yosys flattens the core, so resources are known per target, not per layer;
the per-layer view uses the generator's own figures (multipliers and
latency).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ..emit.atomic import temp_file_for, write_text_atomic
from ..emit.folder import record_result
from ..errors import RtlgenError
from ..kinds import load_build
from .synth import synth_reports

__all__ = ["report", "build_report", "render_markdown", "plot_report"]

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
REPORT_PNG = "report.png"




def _layer_row(entry: dict) -> dict:
    n_in, n_out = (entry.get("shape") or [None, None])[:2]
    types = {"in": entry.get("in_type"), "result": entry.get("result")}
    if entry.get("op") in ("dense", "conv", "avgpool"):
        types.update({"weight": entry.get("weight"), "bias": entry.get("bias"), "accum": entry.get("accum")})
    return {
        "name": entry.get("name"),
        "op": entry.get("op"),
        "shape": [n_in, n_out],
        "types": {k: v for k, v in types.items() if v is not None},
        "reuse_factor": entry.get("reuse_factor", 1),
        "multipliers": entry.get("multipliers", 0),
        "nonzero_weights": entry.get("nonzero_weights"),
        "latency": entry.get("latency", 0),
        "ii": entry.get("ii", 1),
        "arithmetic": entry.get("arithmetic"),
        "adders": entry.get("adders"),
        "adder_depth": entry.get("adder_depth"),
        "share_columns": entry.get("share_columns"),
        "register_ranks": entry.get("register_ranks"),
        "est_luts": entry.get("est_luts"),
        "est_fmax_mhz": entry.get("est_fmax_mhz"),
        "timing_target": entry.get("timing_target"),
        "fused_into": entry.get("fused_into"),
        "weight_rom": entry.get("weight_rom"),
        "bram_bits": entry.get("bram_bits"),
    }


def _rom_text(layer: dict) -> str:
    """`` (weights: 4302-bit ROM)`` for a layer whose weights are read from block RAM."""
    if layer.get("weight_rom") == "bram" and layer.get("bram_bits"):
        return f" (weights: {layer['bram_bits']}-bit ROM)"
    return ""


def build_report(outdir) -> dict:
    """The report of build folder ``outdir`` as a dict (nothing is written)."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise RtlgenError(f"build folder {outdir} does not exist; run 'rtlgen build' first")
    manifest, _ = load_build(outdir)
    layers = [_layer_row(e) for e in manifest.get("layers", [])]
    latency = int(manifest["latency"])
    ii = int(manifest["ii"])
    overhead = latency - sum(layer["latency"] for layer in layers)
    synth = {}
    timing = {}
    for target, rep in synth_reports(outdir).items():
        entry = {
            "tool": rep.get("tool", {}).get("version"),
            "tool_kind": rep.get("tool", {}).get("kind"),
            "command": rep.get("command"),
            "runtime_s": rep.get("runtime_s"),
            "resources": rep.get("resources", {}),
        }
        pnr = rep.get("pnr") or {}
        if pnr.get("fmax_mhz"):
            fmax = float(pnr["fmax_mhz"])
            entry["pnr"] = {"device": pnr.get("device"), "fmax_mhz": fmax, "clock_mhz": pnr.get("clock_mhz"),
                            "tool": (pnr.get("tool") or {}).get("version")}
            timing[target] = {
                "device": pnr.get("device"),
                "fmax_mhz": fmax,
                "latency_ns": round(latency * 1000.0 / fmax, 2),
                "ii_ns": round(ii * 1000.0 / fmax, 2),
                "throughput_minf_s": round(fmax / ii, 3),
            }
        elif pnr.get("error"):
            entry["pnr"] = {"device": pnr.get("device"), "error": pnr["error"]}
        synth[target] = entry
    return {
        "format": 1,
        "top": manifest["top"],
        "verilog": manifest.get("verilog"),
        "input": manifest.get("input", {}),
        "output": manifest.get("output", {}),
        "io": manifest.get("io", "parallel"),
        "latency_cycles": latency,
        "ii": ii,
        "multipliers": int(manifest.get("multipliers", sum(layer["multipliers"] for layer in layers))),
        "overhead_cycles": overhead,
        "layers": layers,
        "synth": synth,
        "timing": timing,
    }


def _types_text(types: dict) -> str:
    parts = [f"{types.get('in', '?')} -> {types.get('result', '?')}"]
    for key in ("weight", "bias", "accum"):
        if types.get(key):
            parts.append(f"{key[0] if key != 'accum' else 'acc'}: {types[key]}")
    return "<br>".join(parts)


def _num(value) -> str:
    return "-" if value is None else str(value)


def render_markdown(data: dict) -> str:
    """The Markdown text of a report dict (see :func:`build_report`)."""
    lines = [f"# {data['top']}", ""]
    inp, out = data.get("input", {}), data.get("output", {})
    lines += [f"Input: {inp.get('count')} x `{inp.get('type')}`; output: {out.get('count')} x "
              f"`{out.get('type')}`.", ""]
    lines += ["## Layers", "",
              "| layer | op | shape | types | reuse | arithmetic | multipliers | adders (depth, ranks) "
              "| est. LUTs | latency (cycles) | II |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for layer in data["layers"]:
        n_in, n_out = layer["shape"]
        shape = f"{n_in} x {n_out}" if layer["op"] == "dense" else f"{n_out}"
        arith = layer.get("arithmetic") or (f"fused into {layer['fused_into']}" if layer.get("fused_into") else "")
        if layer.get("share_columns"):
            arith += f" (groups of {layer['share_columns']} outputs)"
        adders = (f"{layer['adders']} ({layer['adder_depth']}, {layer['register_ranks']})"
                  if layer.get("adders") is not None else "")
        lines.append(f"| {layer['name']} | {layer['op']} | {shape} | {_types_text(layer['types'])} | "
                     f"{layer['reuse_factor']} | {arith} | {layer['multipliers']}{_rom_text(layer)} | {adders} | "
                     f"{_num(layer.get('est_luts')) if layer.get('adders') is not None else ''} | "
                     f"{layer['latency']} | {layer['ii']} |")
    streamed = data.get("io") == "stream"
    if data["overhead_cycles"] and not streamed:
        lines.append(f"| (input register) | | | | | | | | | {data['overhead_cycles']} | |")
    lines += ["", "## Totals", ""]
    if streamed:
        lines += [f"- latency: **{data['latency_cycles']} cycles** from the accept of a frame's last pixel "
                  "(streamed input stage: per-layer figures are per window)",
                  f"- initiation interval (II): **{data['ii']} cycles per image** at full input rate"]
    else:
        lines += [f"- latency: **{data['latency_cycles']} cycles**",
                  f"- initiation interval (II): **{data['ii']} cycles**"]
    lines.append(f"- multipliers: {data['multipliers']}")
    planned = [layer for layer in data["layers"] if layer.get("est_fmax_mhz") is not None]
    if planned:
        slowest = min(planned, key=lambda layer: layer["est_fmax_mhz"])
        lines.append(f"- estimated Fmax ({slowest['timing_target']} delay model, slowest layer "
                     f"{slowest['name']}): {slowest['est_fmax_mhz']:.1f} MHz")
    for target, t in data["timing"].items():
        lines.append(f"- {target} ({t['device']}): Fmax {t['fmax_mhz']:.1f} MHz, latency "
                     f"{t['latency_ns']:.1f} ns, a new input every {t['ii_ns']:.1f} ns "
                     f"({t['throughput_minf_s']:.2f} M inferences/s)")
    if not data["timing"]:
        lines.append("- latency in ns: no place-and-route result yet (`rtlgen synth OUTDIR --target "
                     "ice40|ecp5 --pnr`)")
    lines += ["", "## Synthesis", ""]
    if not data["synth"]:
        lines.append("No synthesis results yet: run `rtlgen synth OUTDIR --target generic|ice40|ecp5|xilinx`.")
    else:
        lines += ["| target | LUTs | FFs | carry | DSP | BRAM | gates | cells | Fmax (MHz) | tool | time (s) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for target, s in data["synth"].items():
            r = s["resources"]
            pnr = s.get("pnr") or {}
            if pnr.get("fmax_mhz"):
                fmax = f"{pnr['fmax_mhz']:.1f} ({pnr.get('device')})"
            elif pnr.get("error"):
                fmax = "P&R failed"
            else:
                fmax = "-"
            generic = target == "generic"
            lines.append(f"| {target} | {'-' if generic else _num(r.get('luts'))} | {_num(r.get('ffs'))} | "
                         f"{'-' if generic else _num(r.get('carry'))} | "
                         f"{_num(r.get('dsp'))} | {_num(r.get('bram'))} | {_num(r.get('gates')) if generic else '-'} | "
                         f"{_num(r.get('cells'))} | {fmax} | {s.get('tool')} ({s.get('tool_kind')}) | "
                         f"{_num(s.get('runtime_s'))} |")
        lines += ["", "Resources are for the whole core (Yosys flattens it); the generic target counts "
                  "Yosys' internal gates, not LUTs."]
        for target, s in data["synth"].items():
            pnr = s.get("pnr") or {}
            if pnr.get("error"):
                lines.append(f"\n{target} place and route: {pnr['error']}")
    if data.get("png"):
        lines += ["", f"![resources and latency]({data['png']})"]
    elif data.get("png_note"):
        lines += ["", data["png_note"]]
    return "\n".join(lines) + "\n"


def plot_report(data: dict, path: Path) -> None:
    """Draw multipliers and latency per layer, and resources per target, to ``path`` (PNG)."""
    # imported late: matplotlib is slow to import and only the picture needs it
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    layers = data["layers"]
    names = [layer["name"] for layer in layers]
    panels = 3 if data["synth"] else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.0 * panels, 4.2))
    x = range(len(layers))
    ax = axes[0]
    ax.bar(x, [layer["multipliers"] for layer in layers], color="tab:blue")
    ax.set_title("multipliers per layer")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks(list(x), names, rotation=45, ha="right", fontsize=8)
    ax = axes[1]
    ax.bar(x, [layer["latency"] for layer in layers], color="tab:orange")
    ax.set_title(f"latency per layer (total {data['latency_cycles']} cycles, II {data['ii']})")
    ax.set_ylabel("cycles")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks(list(x), names, rotation=45, ha="right", fontsize=8)
    if data["synth"]:
        ax = axes[2]
        targets = list(data["synth"])
        kinds = [("luts", "LUTs (generic: gates)"), ("ffs", "FFs"), ("dsp", "DSP")]
        width = 0.8 / len(kinds)
        for k, (key, label) in enumerate(kinds):
            values = []
            for t in targets:
                r = data["synth"][t]["resources"]
                values.append(r.get("gates", 0) if (key == "luts" and t == "generic") else r.get(key, 0))
            pos = [i + (k - (len(kinds) - 1) / 2) * width for i in range(len(targets))]
            bars = ax.bar(pos, [max(v, 0) for v in values], width, label=label)
            for b, v in zip(bars, values):
                ax.annotate(str(v), (b.get_x() + b.get_width() / 2, max(v, 1)), ha="center",
                            va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks(range(len(targets)), [t + (" (gates)" if t == "generic" else "") for t in targets],
                      fontsize=8)
        ax.set_title("synthesis resources per target")
        ax.legend(fontsize=8)
    fig.suptitle(data["top"])
    fig.tight_layout()
    try:
        with temp_file_for(path, ".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def report(outdir, *, png: bool = True) -> tuple[str, dict]:
    """Write ``report.md``, ``report.json`` and ``report.png`` into build folder ``outdir``.

    Returns (markdown text, report dict).
    """
    outdir = Path(outdir)
    data = build_report(outdir)
    data["png"] = None
    if png:
        if importlib.util.find_spec("matplotlib") is None:
            data["png_note"] = "report.png was not drawn: install matplotlib (pip install matplotlib)."
        else:
            try:
                plot_report(data, outdir / REPORT_PNG)
            except OSError as exc:
                raise RtlgenError(f"cannot write {outdir / REPORT_PNG}: {exc.strerror or exc}") from None
            data["png"] = REPORT_PNG
    text = render_markdown(data)
    try:
        write_text_atomic(outdir / REPORT_JSON, json.dumps(data, indent=2) + "\n")
        write_text_atomic(outdir / REPORT_MD, text)
    except OSError as exc:
        raise RtlgenError(f"cannot write the report in {outdir}: {exc.strerror or exc}") from None
    for name in (REPORT_JSON, REPORT_MD) + ((REPORT_PNG,) if data["png"] else ()):
        record_result(outdir, name)
    return text, data
