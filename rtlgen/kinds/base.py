"""What every core kind does the same way (:class:`KindBase`).

A kind derives from :class:`KindBase` and sets ``model_formats`` and
``model_type``; :class:`KindBase` then recognises its model files, writes
and reads its build folders through the one writer of
:mod:`rtlgen.emit.build` and words the line ``rtlgen build`` prints.  The
kind supplies the rest of :class:`rtlgen.kinds.CoreKind`.
"""

from __future__ import annotations

from pathlib import Path

from ..emit.build import generate_core, read_build, save_core

__all__ = ["KindBase"]


class KindBase:
    """The hooks of :class:`rtlgen.kinds.CoreKind` that are the same for every kind."""

    #: model file suffix (lower case) -> description
    model_formats: dict[str, str]
    #: the quantized model class (with ``to_dict``/``from_dict``)
    model_type: type

    def accepts_model_file(self, path) -> bool:
        return Path(str(path)).suffix.lower() in self.model_formats

    def build_core(self, qmodel, top: str | None = None) -> tuple[str, dict]:
        return generate_core(self, qmodel, top)

    def save_build(self, qmodel, outdir, top: str | None = None) -> dict:
        return save_core(self, qmodel, outdir, top)

    def load_build(self, outdir) -> tuple[dict, object]:
        return read_build(outdir, self.model_type.from_dict)

    def build_message(self, manifest: dict, outdir) -> str:
        return (f"wrote {Path(outdir) / manifest['verilog']}: latency {manifest['latency']} cycles, "
                f"II {manifest['ii']}, {self.build_figures(manifest)}")

    def build_figures(self, manifest: dict) -> str:
        """What ``rtlgen build`` says of the core after its latency and II."""
        raise NotImplementedError
