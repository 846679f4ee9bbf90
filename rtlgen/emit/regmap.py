"""The configuration-bus register map of a core, and a driver for it.

:func:`regmap_for` describes every register of a core with stored
parameters (layout in :mod:`rtlgen.hw.storage`) as a JSON-ready dict; a
build folder keeps it as ``regmap.json`` and ``regmap.md``.

:class:`ConfigDriver` works from that dict alone: it serializes a model's
parameters into bus words (:meth:`ConfigDriver.writes`), writes them and
reads the voted values back through any *bus* object that has

``async write(addr, word)``
    one bus write of a ``D``-bit word;
``async read(addr) -> int``
    one bus read (the adapter handles the one-cycle read latency).

The cocotb benches and the I2C target use it in the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from bitstring import Bits

from ..errors import RtlgenError
from ..hw.forest import bank_instance
from ..hw.network import layer_instance
from ..hw.storage import (ADDR_WIDTH, CLEAR_ADDR, COUNT_CYCLES, ERROR_COUNT_ADDR, FIRST_PARAM_ADDR,
                          SCRUB_CYCLES, STATUS_ADDR, bus_layout)
from ..numerics.fixed import parse_type

__all__ = ["REGMAP_JSON", "REGMAP_MD", "regmap_for", "regmap_markdown", "bus_summary", "ConfigDriver"]

REGMAP_JSON = "regmap.json"
REGMAP_MD = "regmap.md"
#: the Markdown map lists every word when there are at most this many
MD_WORD_LIMIT = 512

_ORDER = {
    "dense": ("w[i][j] (input i, output j, shape [n_in, n_out]) at weights.base + j*n_in + i; "
              "b[j] at bias.base + j"),
    "conv": ("w[co][ci][k...] at weights.base + its flat C-order index in the kernel "
             "[C_out, C_in, k...]; b[co] at bias.base + co"),
    "thresholds": ("one word per internal node: tree by tree (the order of model.json), each tree's "
                   "internal nodes in node order; the node goes left when the input code of its "
                   "feature is < the word (min code: always right, max code + 1: always left)"),
    "leaves": ("one word per leaf: tree by tree, each tree's leaves in node order (score codes); "
               "then base[k], the base score of class k"),
}


def _status_registers(counter_width: int) -> list[dict]:
    return [
        {"name": "STATUS", "addr": STATUS_ADDR, "access": "R",
         "fields": {"error_flag": "bit 0: a TMR mismatch was seen since reset or the last clear (sticky)"}},
        {"name": "ERROR_COUNT", "addr": ERROR_COUNT_ADDR, "access": "R", "width": counter_width,
         "description": "saturating count of the clock cycles in which at least one TMR word was scrubbed"},
        {"name": "CLEAR", "addr": CLEAR_ADDR, "access": "W",
         "description": "any write clears STATUS.error_flag and ERROR_COUNT (reads as 0)"},
    ]


def _layer_bank(lw) -> str:
    return f"{layer_instance(lw.index, lw.name)}.params"


def _forest_bank(lw) -> str:
    return bank_instance(lw.name)


#: per set ``op``: the Verilog instance path of the set's bank inside the core top
_BANK = {"dense": _layer_bank, "conv": _layer_bank, "thresholds": _forest_bank, "leaves": _forest_bank}


def regmap_for(model) -> dict | None:
    """The register map of the core of ``model`` (any quantized model with the parameter
    protocol of :mod:`rtlgen.ir.params`; None when nothing is stored)."""
    bus = bus_layout(model)
    if bus is None:
        return None
    shapes = {ps.name: ps.shapes for ps in model.param_sets()}
    layers, words = [], []
    for lw in bus.layers:
        instance = _BANK[lw.op](lw)
        entry = {"name": lw.name, "index": lw.index, "op": lw.op, "storage": lw.storage,
                 "tmr_bits": lw.tmr_bits, "instance": instance, "order": _ORDER[lw.op],
                 "groups": [g.key for g in lw.groups], **shapes[lw.name]}
        places = model.word_places(lw)
        for gi, group in enumerate(lw.groups):
            t, prefix = group.type, group.prefix
            entry[group.key] = {
                "kind": group.kind, "base": group.base, "count": group.count, "type": str(t),
                "width": t.width, "signed": t.signed, "protected_bits": group.protected, "prefix": prefix,
                "signals": (f"{instance}.{prefix}<k>" if group.protected == 0 else
                            f"{instance}.{prefix}<k>_c0/_c1/_c2 (top {group.protected} bits)"
                            + (f", {instance}.{prefix}<k>_lo (low {t.width - group.protected} bits)"
                               if group.protected < t.width else "")),
            }
            for k, code in enumerate(group.codes):
                words.append({"addr": group.base + k, "layer": lw.name, "kind": group.kind, "group": gi,
                              "index": k, "type": str(t), "reset": int(code),
                              "signal": f"{instance}.{prefix}{k}", **places[gi][k]})
        layers.append(entry)
    return {
        "format": 2,
        "addr_width": ADDR_WIDTH,
        "data_width": bus.data_width,
        "counter_width": bus.counter_width,
        "read_latency": 1,
        "word_bytes": bus.data_width // 8,
        "scrub_cycles": SCRUB_CYCLES,
        "count_cycles": COUNT_CYCLES,
        "first_param_addr": FIRST_PARAM_ADDR,
        "end_addr": bus.end,
        "encoding": ("a word holds the code in its low `width` bits (two's complement when signed); "
                     "write data above them is ignored, reads return zeros there; TMR words read "
                     "back voted; unmapped addresses ignore writes and read as 0"),
        "i2c": None if model.i2c is None else {
            **model.i2c, "ports": {"scl_i": 1, "sda_i": 1, "sda_oe": 1},
            "protocol": ("7-bit target address; write: S A+W RH RL d... P; read: S A+W RH RL Sr A+R "
                         "d... P; RH RL the 16-bit word address, each word D/8 bytes MSB first, the "
                         "address increments after every word (see rtlgen.hw.i2c)")},
        "status": _status_registers(bus.counter_width),
        "layers": layers,
        "words": words,
    }


def bus_summary(regmap: dict) -> dict:
    """The manifest's ``config_bus`` section: everything but the word list."""
    return {k: v for k, v in regmap.items() if k not in ("words", "format")} | {"regmap": REGMAP_JSON}


def regmap_markdown(regmap: dict, top: str = "") -> str:
    """A human-readable register map."""
    d = regmap["data_width"]
    lines = [f"# Configuration bus register map{f' of {top}' if top else ''}", "",
             f"Word addresses of {regmap['addr_width']} bits, data words of {d} bits "
             f"({regmap['word_bytes']} byte(s), most significant first on I2C). Ports: `cfg_addr`, "
             f"`cfg_wdata`, `cfg_we` (one word written per cycle where it is high), `cfg_rdata` "
             f"(registered: the word at the address of the previous cycle).", "",
             f"Encoding: {regmap['encoding']}.", "",
             *([f"The bus is mastered by an I2C target at address `0x{regmap['i2c']['address']:02x}` "
                f"(pins `scl_i`, `sda_i`, `sda_oe`; {regmap['i2c']['protocol']}).", ""]
               if regmap.get("i2c") else []),
             f"TMR: a flipped copy is rewritten {regmap['scrub_cycles']} clock edge(s) after the flip; "
             f"the flag and counter show it {regmap['count_cycles']} edges after it.", "",
             "## Status registers", "", "| address | name | access | meaning |", "| --- | --- | --- | --- |"]
    for reg in regmap["status"]:
        meaning = reg.get("description") or "; ".join(reg.get("fields", {}).values())
        lines.append(f"| `0x{reg['addr']:04x}` | {reg['name']} | {reg['access']} | {meaning} |")
    lines += ["", "## Parameter words", "",
              "| set | storage | group | first | last | count | type | triplicated bits |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for layer in regmap["layers"]:
        for kind in layer["groups"]:
            g = layer[kind]
            if not g["count"]:
                continue
            lines.append(f"| `{layer['name']}` | {layer['storage']} | {kind} | `0x{g['base']:04x}` | "
                         f"`0x{g['base'] + g['count'] - 1:04x}` | {g['count']} | `{g['type']}` | "
                         f"{g['protected_bits']} |")
    lines += ["", "Word order:", ""]
    lines += [f"- `{layer['name']}`: {layer['order']}" for layer in regmap["layers"]]
    if len(regmap["words"]) <= MD_WORD_LIMIT:
        lines += ["", "## Every word", "", "| address | set | kind | index | where | type | reset code |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for w in regmap["words"]:
            where = ", ".join(f"{key} {w[key]}" for key in ("tree", "node", "feature", "class") if key in w)
            lines.append(f"| `0x{w['addr']:04x}` | `{w['layer']}` | {w['kind']} | {w['index']} | {where} | "
                         f"`{w['type']}` | {w['reset']} |")
    else:
        lines += ["", f"({len(regmap['words'])} words: see regmap.json for the list.)"]
    return "\n".join(lines) + "\n"


class ConfigDriver:
    """Serializes parameters into bus words and back, and drives a bus.

    Built from a register map (:func:`regmap_for`, ``regmap.json``).
    """

    def __init__(self, regmap: dict):
        self.regmap = regmap
        self.data_width = int(regmap["data_width"])
        self.layers = {layer["name"]: layer for layer in regmap["layers"]}
        self._types = {}

    @classmethod
    def from_build(cls, outdir) -> "ConfigDriver":
        path = Path(outdir) / REGMAP_JSON
        try:
            return cls(json.loads(path.read_text()))
        except FileNotFoundError:
            raise RtlgenError(f"{path} not found: the core has no configuration bus (every layer has "
                              "storage: constant)") from None
        except (OSError, ValueError) as exc:
            raise RtlgenError(f"cannot read {path}: {exc}") from None

    def _type(self, spec: str):
        if spec not in self._types:
            self._types[spec] = parse_type(spec)
        return self._types[spec]

    # -- words ------------------------------------------------------------

    def encode(self, code: int, type_spec: str) -> int:
        """The bus word holding ``code`` of type ``type_spec``."""
        t = self._type(type_spec)
        code = int(code)
        if not t.min_code <= code <= t.max_code:
            raise RtlgenError(f"code {code} does not fit {t} [{t.min_code}, {t.max_code}]")
        bits = Bits(int=code, length=t.width) if t.signed else Bits(uint=code, length=t.width)
        return bits.uint   # zero-extended to the D-bit word

    def decode(self, word: int, type_spec: str) -> int:
        """The code a bus word read back holds (bits above the type's width are ignored)."""
        t = self._type(type_spec)
        bits = Bits(uint=int(word), length=self.data_width)[self.data_width - t.width:]
        return bits.int if t.signed else bits.uint

    def word_bytes(self, word: int) -> bytes:
        """The ``D/8`` bytes of a word, most significant first (the I2C order)."""
        return Bits(uint=int(word), length=self.data_width).bytes

    def word_from_bytes(self, data: bytes) -> int:
        bits = Bits.from_bytes(bytes(data))
        if len(bits) != self.data_width:
            raise RtlgenError(f"a word is {self.data_width // 8} byte(s), got {len(bits) // 8}")
        return bits.uint

    def i2c_payload(self, addr: int, words=()) -> bytes:
        """The bytes of an I2C write after the target address: RH RL, then each word MSB first."""
        return Bits(uint=int(addr), length=ADDR_WIDTH).bytes + b"".join(self.word_bytes(w) for w in words)

    # -- parameters -------------------------------------------------------
    #
    # Parameters travel as {set name: (codes of group 0, codes of group 1, ...)}
    # in the order of the register map's "groups" (a layer: weights, bias; a
    # forest: thresholds; leaves, base), each in word order.

    def _sets(self, model) -> dict:
        sets = {ps.name: ps for ps in model.param_sets()}
        for name in self.layers:
            if name not in sets:
                raise RtlgenError(f"the register map names {name!r}, which the model does not store; "
                                  "rebuild the core for this model")
        return sets

    def writes(self, model) -> list[tuple[int, int]]:
        """(address, word) for every stored parameter of ``model`` (a quantized
        model of the core's shape, of any kind), in address order."""
        sets = self._sets(model)
        out = []
        for name, entry in self.layers.items():
            for key, group in zip(entry["groups"], sets[name].groups):
                g = entry[key]
                if len(group.codes) != g["count"]:
                    raise RtlgenError(f"{name!r}: {len(group.codes)} {key} codes, the register map "
                                      f"has {g['count']} words; rebuild the core for this model")
                out += [(g["base"] + k, self.encode(c, g["type"])) for k, c in enumerate(group.codes)]
        return sorted(out)

    def codes_from_words(self, words: dict[int, int]) -> dict[str, tuple]:
        """Per set, the codes of each group in word order, from address -> word."""
        out = {}
        for name, entry in self.layers.items():
            out[name] = tuple(np.array([self.decode(words[entry[key]["base"] + k], entry[key]["type"])
                                        for k in range(entry[key]["count"])], dtype=np.int64)
                              for key in entry["groups"])
        return out

    def model_with(self, model, codes: dict[str, tuple]):
        """A copy of ``model`` whose stored sets hold ``codes`` (for the golden model)."""
        return model.with_param_codes(codes)

    def addresses(self) -> list[int]:
        return [entry[key]["base"] + k for entry in self.layers.values() for key in entry["groups"]
                for k in range(entry[key]["count"])]

    # -- bus transactions ----------------------------------------------------

    async def program(self, bus, model) -> int:
        """Write every stored parameter of ``model``; returns the number of writes."""
        writes = self.writes(model)
        for addr, word in writes:
            await bus.write(addr, word)
        return len(writes)

    async def read_params(self, bus) -> dict[str, tuple]:
        """Read back every stored parameter (TMR words voted)."""
        words = {}
        for addr in self.addresses():
            words[addr] = await bus.read(addr)
        return self.codes_from_words(words)

    async def status(self, bus) -> tuple[bool, int]:
        """(sticky error flag, error count)."""
        return bool(await bus.read(STATUS_ADDR) & 1), int(await bus.read(ERROR_COUNT_ADDR))

    async def clear(self, bus) -> None:
        await bus.write(CLEAR_ADDR, 0)
