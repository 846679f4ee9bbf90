"""Phase-locked loops of the supported FPGA families: parameter search and instance.

:func:`ice40_pll` and :func:`ecp5_pll` find the divider settings whose
output is closest to a requested frequency within the limits of the
family's data sheet, and return a :class:`PllSetting` that says what it
achieves; :meth:`PllSetting.instance` makes the primitive.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Instance

from rtlgen.errors import RtlgenError

__all__ = ["PllSetting", "ice40_pll", "ecp5_pll"]


@dataclass(frozen=True)
class PllSetting:
    """A PLL configuration: ``family``, input and achieved output frequency (MHz), dividers."""
    family: str
    f_in: float
    f_out: float
    dividers: tuple[tuple[str, int], ...]

    def divider(self, name: str) -> int:
        return dict(self.dividers)[name]

    def instance(self, clk_in, clk_out, locked) -> Instance:
        """The PLL primitive: ``clk_in`` the reference (a pad port on iCE40, a signal on ECP5)."""
        d = dict(self.dividers)
        if self.family == "ice40":
            return Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                p_DIVR=d["DIVR"], p_DIVF=d["DIVF"], p_DIVQ=d["DIVQ"], p_FILTER_RANGE=d["FILTER_RANGE"],
                io_PACKAGEPIN=clk_in, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clk_out, o_LOCK=locked)
        return Instance(
            "EHXPLLL",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=d["CLKI_DIV"], p_CLKFB_DIV=d["CLKFB_DIV"], p_CLKOP_DIV=d["CLKOP_DIV"],
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_CPHASE=d["CLKOP_DIV"] - 1, p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP",
            i_CLKI=clk_in, i_CLKFB=clk_out, i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0,
            i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=clk_out, o_LOCK=locked)


def _best(candidates, f_out: float, family: str, f_in: float, tolerance: float) -> PllSetting:
    label = {"ice40": "iCE40", "ecp5": "ECP5"}[family]
    best = min(candidates, key=lambda c: (abs(c[0] - f_out), c[1]), default=None)
    if best is None or abs(best[0] - f_out) > tolerance * f_out:
        near = f"; the nearest is {best[0]:.3f} MHz" if best is not None else ""
        raise RtlgenError(f"the {label} PLL cannot make {f_out:g} MHz from {f_in:g} MHz within "
                          f"{tolerance:.0%}{near}: choose another --clock-mhz")
    return PllSetting(family, f_in, round(best[0], 6), best[2])


def ice40_pll(f_in: float, f_out: float, tolerance: float = 0.01) -> PllSetting:
    """SB_PLL40 in SIMPLE feedback: f_out = f_in * (DIVF+1) / ((DIVR+1) * 2**DIVQ).

    Limits (iCE40 sysCLOCK PLL guide): phase detector 10..133 MHz, VCO
    533..1066 MHz, output 16..275 MHz, DIVR 0..15, DIVF 0..127, DIVQ 1..6.
    """
    if not 16 <= f_out <= 275:
        raise RtlgenError(f"the iCE40 PLL makes 16 to 275 MHz, not {f_out:g} MHz: choose another --clock-mhz")
    found = []
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        filt = next(k for k, top in enumerate((17, 26, 44, 66, 101, 1e9), 1) if pfd < top)
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                found.append((out, divr, (("DIVR", divr), ("DIVF", divf), ("DIVQ", divq),
                                          ("FILTER_RANGE", filt))))
    return _best(found, f_out, "ice40", f_in, tolerance)


def ecp5_pll(f_in: float, f_out: float, tolerance: float = 0.01) -> PllSetting:
    """EHXPLLL with CLKOP feedback: f_out = f_in * CLKFB_DIV / CLKI_DIV, VCO = f_out * CLKOP_DIV.

    Limits (ECP5 sysCLOCK guide): phase detector 3.125..400 MHz, VCO
    400..800 MHz, output 3.125..400 MHz, CLKI_DIV 1..128, CLKFB_DIV 1..80,
    CLKOP_DIV 1..128.
    """
    if not 3.125 <= f_out <= 400:
        raise RtlgenError(f"the ECP5 PLL makes 3.125 to 400 MHz, not {f_out:g} MHz: choose another --clock-mhz")
    found = []
    for clki in range(1, 129):
        pfd = f_in / clki
        if not 3.125 <= pfd <= 400:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            if not 3.125 <= out <= 400:
                continue
            op = max(1, int(-(-400 // out)))
            if out * op > 800 or op > 128:
                continue
            found.append((out, clki, (("CLKI_DIV", clki), ("CLKFB_DIV", clkfb), ("CLKOP_DIV", op))))
    return _best(found, f_out, "ecp5", f_in, tolerance)
