"""The batch engine: a built core in a compiled Verilator testbench, with no Python per cycle.

For long runs (millions of vectors).  The testbench is C++ written for the
core's ports (:func:`harness_source`, from ``manifest.json``: the same port
contract as the cocotb bench ``sims/core_tb.py``).  It reads the input words
from a binary file, drives ``in_valid`` with seeded random gaps, honours
``in_ready`` (and so the II), holds the configuration inputs idle, samples
``out_valid``/``out_data`` and checks, as the cocotb bench does, that every
result comes exactly ``latency`` cycles after the accept that completed its
vector, that no ``out_valid`` is spurious and that accepts are at least
``ii`` apart.  It writes the output words to a binary file; this module
packs and unpacks the words with numpy and compares them with the expected
codes.

Signals are sampled and driven once per cycle while the clock is low, the
monitor before the source, as in the cocotb bench.  Streamed cores
(``io: stream``) take one pixel per accept (``stream.channels`` elements);
the last pixel of a frame completes the vector.

The compiled testbench is kept in a cache folder (``RTLGEN_CACHE``, else
``~/.cache/rtlgen``) under the SHA-256 of the Verilog, the testbench source,
the Verilator version and the flags, so a second run of the same core does
not rebuild.  Elements up to 64 bits wide are supported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from rtlgen import progress
from rtlgen import cache
from rtlgen.errors import RtlgenError
from rtlgen.flows import tools

__all__ = ["run_batch", "build_testbench", "harness_source", "verilog_harness_source", "pack_words", "unpack_words", "frame_words", "BATCH_MIN_VECTORS",
           "cache_root"]

#: ``rtlgen sim`` takes the batch engine from this many vectors on (with Verilator)
BATCH_MIN_VECTORS = 20_000
RESET_CYCLES = 4
#: the level each configuration input rests at (as in the cocotb bench)
CONFIG_IDLE = {"cfg_we": 0, "cfg_addr": 0, "cfg_wdata": 0, "scl_i": 1, "sda_i": 1}
#: C++ optimisation of the model and the testbench (a build once, then many vectors);
#: ``RTLGEN_BATCH_CFLAGS`` (space separated) replaces it
OPT_FLAGS = ("-O1",)


def _opt_flags() -> tuple:
    override = os.environ.get("RTLGEN_BATCH_CFLAGS")
    return tuple(override.split()) if override is not None else OPT_FLAGS


def cache_root() -> Path:
    """Where compiled testbenches are kept: ``batch/`` in :func:`rtlgen.cache.cache_dir`."""
    return cache.cache_dir("batch")


# ---------------------------------------------------------------------------
# words: vectors of codes <-> 32-bit chunks
# ---------------------------------------------------------------------------

def _chunks(width: int) -> int:
    return max(1, -(-int(width) // 32))


def pack_words(codes: np.ndarray, width: int) -> np.ndarray:
    """Rows of codes ([N, count], int64, elements of ``width`` <= 64 bits, two's complement) as
    words: element ``k`` at bits ``[k*width, (k+1)*width)``, little-endian 32-bit chunks
    ([N, chunks] uint32)."""
    codes = np.asarray(codes, dtype=np.int64)
    n, count = codes.shape
    out = np.zeros((n, _chunks(count * width) + 1), dtype=np.uint64)     # one spare chunk for carries
    mask = np.uint64((1 << width) - 1) if width < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    values = codes.astype(np.uint64) & mask
    for k in range(count):
        offset = k * width
        v = values[:, k]
        for piece in range(0, width, 32):         # 32-bit pieces of a wide element
            bits = min(32, width - piece)
            part = (v >> np.uint64(piece)) & np.uint64((1 << bits) - 1)
            at = offset + piece
            chunk, shift = divmod(at, 32)
            out[:, chunk] |= (part << np.uint64(shift)) & np.uint64(0xFFFFFFFF)
            if shift:
                out[:, chunk + 1] |= part >> np.uint64(32 - shift)
    return out[:, :-1].astype(np.uint32)


def unpack_words(words: np.ndarray, width: int, count: int, signed: bool) -> np.ndarray:
    """The inverse of :func:`pack_words`: [N, chunks] uint32 -> [N, count] int64 codes."""
    w = np.concatenate([np.asarray(words, dtype=np.uint64), np.zeros((len(words), 2), dtype=np.uint64)], axis=1)
    out = np.zeros((len(words), count), dtype=np.uint64)
    for k in range(count):
        offset = k * width
        for piece in range(0, width, 32):
            bits = min(32, width - piece)
            chunk, shift = divmod(offset + piece, 32)
            part = (w[:, chunk] >> np.uint64(shift)) | ((w[:, chunk + 1] << np.uint64(32 - shift)) if shift else 0)
            part = part & np.uint64((1 << bits) - 1)
            out[:, k] |= part << np.uint64(piece)
    if signed and width < 64:   # the sign bit to bit 63, then an arithmetic shift back
        return (out << np.uint64(64 - width)).view(np.int64) >> np.int64(64 - width)
    return out.view(np.int64) if width == 64 else out.astype(np.int64)


def frame_words(codes: np.ndarray, manifest: dict) -> tuple[np.ndarray, int, int]:
    """The words one accept takes and the accepts per vector: ([N * per_vector, count], count, per_vector).
    A streamed core takes pixel ``p`` of every channel ``c`` (vector element ``c*pixels + p``) at once."""
    stream = manifest.get("stream") if manifest.get("io") == "stream" else None
    if stream is None:
        return codes, int(manifest["input"]["count"]), 1
    channels, pixels = int(stream["channels"]), int(stream["pixels"])
    per_pixel = codes.reshape(len(codes), channels, pixels).transpose(0, 2, 1).reshape(-1, channels)
    return per_pixel, channels, pixels


# ---------------------------------------------------------------------------
# the C++ testbench
# ---------------------------------------------------------------------------

def _setter(port: str, width: int) -> str:
    if width <= 32:
        return f"top->{port} = w[0];"
    if width <= 64:
        return f"top->{port} = (uint64_t)w[0] | ((uint64_t)w[1] << 32);"
    return f"for (int i = 0; i < {_chunks(width)}; ++i) top->{port}[i] = w[i];"


def _getter(port: str, width: int) -> str:
    if width <= 32:
        return f"w[0] = (uint32_t)top->{port};"
    if width <= 64:
        return f"w[0] = (uint32_t)top->{port}; w[1] = (uint32_t)(top->{port} >> 32);"
    return f"for (int i = 0; i < {_chunks(width)}; ++i) w[i] = top->{port}[i];"


HARNESS = r"""// rtlgen batch testbench for core {top} (generated from its manifest)
#include "V{top}.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static const int IN_CHUNKS = {in_chunks};
static const int OUT_CHUNKS = {out_chunks};

static inline void set_in(V{top}* top, const uint32_t* w) {{ {set_in} }}
static inline void get_out(V{top}* top, uint32_t* w) {{ {get_out} }}
static inline void idle(V{top}* top) {{ {idle} }}

static uint64_t rng_state;
static inline uint64_t next_random() {{   // xorshift64*
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}}

static void write_progress(const std::string& path, uint64_t count) {{
    if (path.empty()) return;
    std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) return;
    std::fprintf(f, "%llu\n", (unsigned long long)count);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
}}

int main(int argc, char** argv) {{
    if (argc != 10) {{
        std::fprintf(stderr, "usage: %s IN OUT WORDS PER_VECTOR LATENCY II GAP_PER_MILLION SEED PROGRESS\n", argv[0]);
        return 3;
    }}
    const char* in_path = argv[1];
    const char* out_path = argv[2];
    const uint64_t n_words = std::strtoull(argv[3], nullptr, 10);
    const uint64_t per_vector = std::strtoull(argv[4], nullptr, 10);
    const uint64_t latency = std::strtoull(argv[5], nullptr, 10);
    const uint64_t ii = std::strtoull(argv[6], nullptr, 10);
    const uint64_t gap = std::strtoull(argv[7], nullptr, 10);
    rng_state = std::strtoull(argv[8], nullptr, 10) * 0x9E3779B97F4A7C15ULL + 1;
    const std::string progress_path = argv[9];
    const uint64_t n_vectors = n_words / per_vector;

    std::vector<uint32_t> in((size_t)(n_words * IN_CHUNKS));
    FILE* fin = std::fopen(in_path, "rb");
    if (!fin || std::fread(in.data(), 4, in.size(), fin) != in.size()) {{
        std::fprintf(stderr, "cannot read %s\n", in_path);
        return 3;
    }}
    std::fclose(fin);
    FILE* fout = std::fopen(out_path, "wb");
    if (!fout) {{ std::fprintf(stderr, "cannot write %s\n", out_path); return 3; }}

    VerilatedContext ctx;
    V{top}* top = new V{top}(&ctx);
    idle(top);
    top->rst = 1; top->in_valid = 0; top->clk = 0; top->eval();
    for (int k = 0; k < {reset_cycles}; ++k) {{ top->clk = 1; top->eval(); top->clk = 0; top->eval(); }}
    top->rst = 0; top->eval();

    std::vector<uint64_t> accepts;
    accepts.reserve((size_t)n_vectors);
    uint64_t cycle = 0, index = 0, outputs = 0, offered_at = 0, errors = 0, min_spacing = UINT64_MAX;
    uint64_t last_accept = 0, wrong_latency = 0, lat_min = UINT64_MAX, lat_max = 0;
    bool offering = false;
    const uint64_t stall_limit = 1000 + 4 * ii * per_vector + latency;
    uint32_t word[OUT_CHUNKS];
    std::vector<uint32_t> out_buffer;
    out_buffer.reserve(1 << 16);
    const char* stop = "";
    while (outputs < n_vectors) {{
        // the monitor: out_valid of this cycle
        if (top->out_valid) {{
            get_out(top, word);
            out_buffer.insert(out_buffer.end(), word, word + OUT_CHUNKS);
            if (out_buffer.size() >= (1 << 16)) {{
                std::fwrite(out_buffer.data(), 4, out_buffer.size(), fout);
                out_buffer.clear();
            }}
            if (outputs >= accepts.size()) {{
                if (errors++ < 20) std::fprintf(stderr, "cycle %llu: spurious out_valid (output #%llu, %llu vectors accepted)\n",
                    (unsigned long long)cycle, (unsigned long long)outputs, (unsigned long long)accepts.size());
                stop = "spurious";
                break;
            }}
            uint64_t lat = cycle - accepts[outputs];
            if (lat < lat_min) lat_min = lat;
            if (lat > lat_max) lat_max = lat;
            if (lat != latency) {{
                ++wrong_latency;
                if (errors++ < 20) std::fprintf(stderr, "vector %llu: accepted at cycle %llu, out_valid at cycle %llu: latency %llu, manifest says %llu\n",
                    (unsigned long long)outputs, (unsigned long long)accepts[outputs], (unsigned long long)cycle,
                    (unsigned long long)lat, (unsigned long long)latency);
            }}
            ++outputs;
            if ((outputs & 0xFFFF) == 0) write_progress(progress_path, outputs);
        }}
        // the source: offer the next word unless this cycle idles
        if (!offering && index < n_words && (gap == 0 || next_random() % 1000000 >= gap)) {{
            set_in(top, &in[(size_t)(index * IN_CHUNKS)]);
            offering = true;
            offered_at = cycle;
        }}
        top->in_valid = offering;
        top->eval();
        if (offering && top->in_ready) {{
            if ((index + 1) % per_vector == 0) {{
                if (!accepts.empty()) {{
                    uint64_t spacing = cycle - last_accept;
                    if (spacing < min_spacing) min_spacing = spacing;
                    if (spacing < ii && errors++ < 20) std::fprintf(stderr, "vectors completed at cycles %llu and %llu, manifest ii is %llu\n",
                        (unsigned long long)last_accept, (unsigned long long)cycle, (unsigned long long)ii);
                }}
                accepts.push_back(cycle);
                last_accept = cycle;
            }}
            ++index;
            offering = false;
        }}
        top->clk = 1; top->eval();
        top->clk = 0; top->eval();
        ++cycle;
        if (offering && cycle - offered_at > stall_limit) {{
            if (errors++ < 20) std::fprintf(stderr, "in_ready stayed low for %llu cycles while word %llu was offered\n",
                (unsigned long long)stall_limit, (unsigned long long)index);
            stop = "stall";
            break;
        }}
        if (index == n_words && !offering && outputs < accepts.size() && cycle > last_accept + latency + 1) {{
            if (errors++ < 20) std::fprintf(stderr, "vector %llu: accepted at cycle %llu but no out_valid by cycle %llu (manifest latency %llu)\n",
                (unsigned long long)outputs, (unsigned long long)accepts[outputs], (unsigned long long)cycle,
                (unsigned long long)latency);
            stop = "missing";
            break;
        }}
    }}
    std::fwrite(out_buffer.data(), 4, out_buffer.size(), fout);
    std::fclose(fout);
    write_progress(progress_path, outputs);
    std::printf("{{\"cycles\": %llu, \"accepted\": %llu, \"outputs\": %llu, \"errors\": %llu, \"wrong_latency\": %llu, "
                "\"latency_min\": %lld, \"latency_max\": %lld, \"min_spacing\": %lld, \"stop\": \"%s\"}}\n",
                (unsigned long long)cycle, (unsigned long long)accepts.size(), (unsigned long long)outputs,
                (unsigned long long)errors, (unsigned long long)wrong_latency,
                lat_min == UINT64_MAX ? -1LL : (long long)lat_min, outputs ? (long long)lat_max : -1LL,
                min_spacing == UINT64_MAX ? -1LL : (long long)min_spacing, stop);
    top->final();
    delete top;
    return errors ? 1 : 0;
}}
"""


def _core_ports(manifest: dict) -> dict[str, int]:
    ports = {name: int(width) for name, width in manifest["ports"].items()}
    for name in ("clk", "rst", "in_valid", "in_ready", "in_data", "out_valid", "out_data"):
        if name not in ports:
            raise RtlgenError(f"manifest of {manifest['top']!r}: no port {name!r}; the batch engine drives "
                              "the core ports of rtlgen cores only")
    return ports


def harness_source(manifest: dict) -> str:
    """The C++ testbench for the core that ``manifest`` describes (see the module docstring)."""
    ports = _core_ports(manifest)
    idle = " ".join(f"top->{name} = {level};" for name, level in CONFIG_IDLE.items() if name in ports)
    return HARNESS.format(top=manifest["top"], in_chunks=_chunks(ports["in_data"]),
                          out_chunks=_chunks(ports["out_data"]), set_in=_setter("in_data", ports["in_data"]),
                          get_out=_getter("out_data", ports["out_data"]), idle=idle or "(void)top;",
                          reset_cycles=RESET_CYCLES)


VERILOG_HARNESS = r"""// rtlgen batch testbench for core @TOP@ (generated from its manifest), for Icarus Verilog
`timescale 1ns/1ps
module rtlgen_batch_tb;
    localparam IW = @IW@, OW = @OW@, RING = @RING@;
    localparam [63:0] NONE = 64'hFFFF_FFFF_FFFF_FFFF;
    localparam integer STDERR = 32'h8000_0002;
    // the inputs start unknown and take their levels at 1 ns, an event that starts every
    // "always @*" block of the core (a declaration's value is no event under IEEE 1800)
    reg clk = 1'b0;
    reg rst;
    reg in_valid;
    reg [IW-1:0] in_data;
    wire in_ready, out_valid;
    wire [OW-1:0] out_data;
@IDLE_REGS@
    @TOP@ dut (.clk(clk), .rst(rst), .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),
               .out_valid(out_valid), .out_data(out_data)@IDLE_PORTS@);
    always #5 clk = ~clk;

    reg [63:0] accepts [0:RING-1];
    reg [63:0] n_words, per_vector, latency, ii, gap, n_vectors, stall_limit;
    reg [63:0] cycle, index, outputs, accepted, errors, offered_at, last_accept;
    reg [63:0] wrong_latency, lat, lat_min, lat_max, min_spacing, spacing;
    integer seed, fin, fout, fprog, r, stop;
    reg offering, have_progress;
    reg [8*1024-1:0] in_path, out_path, progress_path;

    task write_progress;
        begin
            if (have_progress) begin
                fprog = $fopen(progress_path, "w");
                if (fprog != 0) begin
                    $fdisplay(fprog, "%0d", outputs);
                    $fclose(fprog);
                end
            end
        end
    endtask

    initial begin
        if (!$value$plusargs("in=%s", in_path) || !$value$plusargs("out=%s", out_path)
                || !$value$plusargs("words=%d", n_words) || !$value$plusargs("per_vector=%d", per_vector)
                || !$value$plusargs("latency=%d", latency) || !$value$plusargs("ii=%d", ii)
                || !$value$plusargs("gap=%d", gap) || !$value$plusargs("seed=%d", seed)) begin
            $fdisplay(STDERR, "usage: +in= +out= +words= +per_vector= +latency= +ii= +gap= +seed= [+progress=]");
            $finish;
        end
        #1;
        rst = 1'b1;
        in_valid = 1'b0;
        in_data = {IW{1'b0}};
@IDLE_LEVELS@
        have_progress = $value$plusargs("progress=%s", progress_path);
        fin = $fopen(in_path, "r");
        fout = $fopen(out_path, "w");
        if (fin == 0 || fout == 0) begin
            $fdisplay(STDERR, "cannot open the input or the output file");
            $finish;
        end
        n_vectors = n_words / per_vector;
        stall_limit = 1000 + 4 * ii * per_vector + latency;
        cycle = 0; index = 0; outputs = 0; accepted = 0; errors = 0; offered_at = 0; last_accept = 0;
        wrong_latency = 0; lat_min = NONE; lat_max = 0; min_spacing = NONE; stop = 0; offering = 1'b0;
        repeat (@RESET@) @(posedge clk);
        @(negedge clk);
        rst = 1'b0;
        #1;
        while (outputs < n_vectors && stop == 0) begin
            // the monitor: out_valid of this cycle
            if (out_valid) begin
                $fdisplay(fout, "%h", out_data);
                if (outputs >= accepted) begin
                    if (errors < 20) $fdisplay(STDERR, "cycle %0d: spurious out_valid (output #%0d, %0d vectors accepted)",
                                               cycle, outputs, accepted);
                    errors = errors + 1;
                    stop = 1;
                end else begin
                    lat = cycle - accepts[outputs % RING];
                    if (lat < lat_min) lat_min = lat;
                    if (lat > lat_max) lat_max = lat;
                    if (lat != latency) begin
                        wrong_latency = wrong_latency + 1;
                        if (errors < 20) $fdisplay(STDERR, "vector %0d: accepted at cycle %0d, out_valid at cycle %0d: latency %0d, manifest says %0d",
                                                   outputs, accepts[outputs % RING], cycle, lat, latency);
                        errors = errors + 1;
                    end
                    outputs = outputs + 1;
                    if (outputs % 4096 == 0) write_progress;
                end
            end
            if (stop == 0) begin
                // the source: offer the next word unless this cycle idles
                if (!offering && index < n_words && (gap == 0 || ({$random(seed)} % 1000000) >= gap)) begin
                    r = $fscanf(fin, "%h\n", in_data);
                    offering = 1'b1;
                    offered_at = cycle;
                end
                in_valid = offering;
                #1;
                if (offering && in_ready) begin
                    if ((index + 1) % per_vector == 0) begin
                        if (accepted > 0) begin
                            spacing = cycle - last_accept;
                            if (spacing < min_spacing) min_spacing = spacing;
                            if (spacing < ii) begin
                                if (errors < 20) $fdisplay(STDERR, "vectors completed at cycles %0d and %0d, manifest ii is %0d",
                                                           last_accept, cycle, ii);
                                errors = errors + 1;
                            end
                        end
                        if (accepted - outputs >= RING) begin
                            if (errors < 20) $fdisplay(STDERR, "cycle %0d: more than %0d vectors in flight (manifest latency %0d)",
                                                       cycle, RING, latency);
                            errors = errors + 1;
                            stop = 3;
                        end
                        accepts[accepted % RING] = cycle;
                        accepted = accepted + 1;
                        last_accept = cycle;
                    end
                    index = index + 1;
                    offering = 1'b0;
                end
                @(negedge clk);
                #1;
                cycle = cycle + 1;
                if (offering && cycle - offered_at > stall_limit) begin
                    if (errors < 20) $fdisplay(STDERR, "in_ready stayed low for %0d cycles while word %0d was offered",
                                               stall_limit, index);
                    errors = errors + 1;
                    stop = 2;
                end
                if (stop == 0 && index == n_words && !offering && outputs < accepted
                        && cycle > last_accept + latency + 1) begin
                    if (errors < 20) $fdisplay(STDERR, "vector %0d: accepted at cycle %0d but no out_valid by cycle %0d (manifest latency %0d)",
                                               outputs, accepts[outputs % RING], cycle, latency);
                    errors = errors + 1;
                    stop = 3;
                end
            end
        end
        $fclose(fout);
        $fclose(fin);
        write_progress;
        $display("{\"cycles\": %0d, \"accepted\": %0d, \"outputs\": %0d, \"errors\": %0d, \"wrong_latency\": %0d, \"latency_min\": %0d, \"latency_max\": %0d, \"min_spacing\": %0d, \"stop\": %0d}",
                 cycle, accepted, outputs, errors, wrong_latency, lat_min, lat_max, min_spacing, stop);
        $finish;
    end
endmodule
"""

STOP_REASONS = {0: "", 1: "spurious", 2: "stall", 3: "missing"}


def verilog_harness_source(manifest: dict) -> str:
    """The Verilog testbench (for Icarus) of the core that ``manifest`` describes (see the module docstring)."""
    ports = _core_ports(manifest)
    idle = [(name, level) for name, level in CONFIG_IDLE.items() if name in ports]
    regs = "\n".join(f"    reg [{ports[name] - 1}:0] {name};" for name, level in idle)
    levels = "\n".join(f"        {name} = {level};" for name, level in idle)
    conns = "".join(f", .{name}({name})" for name, _ in idle)
    latency, ii = int(manifest["latency"]), max(1, int(manifest.get("ii", 1)))
    ring = latency // ii + 4
    text = VERILOG_HARNESS
    for key, value in (("@TOP@", str(manifest["top"])), ("@IW@", str(ports["in_data"])),
                       ("@OW@", str(ports["out_data"])), ("@RING@", str(ring)), ("@IDLE_REGS@", regs),
                       ("@IDLE_PORTS@", conns), ("@IDLE_LEVELS@", levels),
                       ("@RESET@", str(RESET_CYCLES))):
        text = text.replace(key, value)
    return text


# ---------------------------------------------------------------------------
# build (cached) and run
# ---------------------------------------------------------------------------

def _cached(key: "hashlib._Hash", top: str, product: str, build) -> Path:
    """``cache_root()/<top>-<key>/<product>``, made by ``build(work)`` in a temporary folder the first time."""
    folder = cache_root() / f"{top}-{key.hexdigest()[:24]}"
    exe = folder / product
    if exe.is_file():
        cache.used(folder)
        return exe
    cache_root().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{top}-", dir=cache_root()))
    try:
        build(work)
    except RtlgenError:
        raise                   # the folder stays, with its build.log, for a look
    except BaseException:       # Ctrl-C, SIGTERM, anything else: nothing half-built stays
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work / "tmp", ignore_errors=True)
    try:
        work.rename(folder)
    except OSError:             # another process finished the same build first
        shutil.rmtree(work, ignore_errors=True)
    cache.prune("batch")        # within its size limit (the entries of the last hour stay)
    return exe


def _tmp(work: Path) -> str:
    """A ``TMPDIR`` for the build tools inside *work*: what a stopped compiler leaves goes with the folder."""
    (work / "tmp").mkdir(exist_ok=True)
    return str(work / "tmp")


def _failed_build(work: Path, what: str) -> RtlgenError:
    tail = "\n".join((work / "build.log").read_text(errors="replace").splitlines()[-15:])
    return RtlgenError(f"the {what} build of the batch testbench failed (log: {work / 'build.log'}):\n{tail}")


def _build(outdir: Path, manifest: dict) -> Path:
    """The compiled Verilator testbench of the core in ``outdir``: from the cache, else built into it."""
    top = str(manifest["top"])
    verilog = outdir / manifest["verilog"]
    source = harness_source(manifest)
    key = hashlib.sha256()
    key.update(verilog.read_bytes())
    key.update(source.encode())
    build_env = tools.verilator_build_env()
    flags = _opt_flags()
    key.update(json.dumps({"verilator": tools.verilator_version(), "flags": flags,
                           "cxx": os.environ.get("CXX", ""),
                           "cxxflags": build_env.get("CXXFLAGS", os.environ.get("CXXFLAGS", ""))},
                          sort_keys=True).encode())

    def build(work: Path) -> None:
        (work / "tb.cpp").write_text(source)
        shutil.copyfile(verilog, work / verilog.name)
        cmd = ["verilator", "--cc", "--exe", "--build", "-Wno-fatal", "-Wno-lint", "--top-module", top,
               "-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
               "-CFLAGS", " ".join(flags), "-j", str(max(1, min(4, os.cpu_count() or 1))),
               "--Mdir", "obj", "-o", "Vsim", verilog.name, "tb.cpp"]
        with progress.stage(f"building the batch testbench of {top} (Verilator, C++ {' '.join(flags)})"), \
                open(work / "build.log", "w") as log:
            res = tools.run_group(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, **build_env, "TMPDIR": _tmp(work)})
        if res.returncode != 0:
            raise _failed_build(work, "Verilator")
        (work / "obj" / "Vsim").rename(work / "Vsim")
        shutil.rmtree(work / "obj", ignore_errors=True)

    return _cached(key, top, "Vsim", build)


def _build_icarus(outdir: Path, manifest: dict) -> Path:
    """The compiled Icarus testbench (``sim.vvp``) of the core in ``outdir``, cached like :func:`_build`."""
    top = str(manifest["top"])
    verilog = outdir / manifest["verilog"]
    source = verilog_harness_source(manifest)
    iverilog = tools.ensure_icarus()
    key = hashlib.sha256()
    key.update(verilog.read_bytes())
    key.update(source.encode())
    key.update(tools._checked_icarus(str(iverilog)).encode())

    def build(work: Path) -> None:
        (work / "tb.v").write_text(source)
        shutil.copyfile(verilog, work / verilog.name)
        with progress.stage(f"building the batch testbench of {top} (Icarus)"), \
                open(work / "build.log", "w") as log:
            res = tools.run_group([str(iverilog), "-g2012", "-o", "sim.vvp", "-s", "rtlgen_batch_tb", "tb.v",
                                   verilog.name], cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "TMPDIR": _tmp(work)})
        if res.returncode != 0:
            raise _failed_build(work, "Icarus")

    return _cached(key, f"{top}-icarus", "sim.vvp", build)


def build_testbench(outdir, simulator: str = "verilator") -> Path:
    """The compiled batch testbench of the core in ``outdir`` on ``simulator`` (from the cache, or built
    into it): the Verilator executable, or the Icarus ``sim.vvp``."""
    from rtlgen.flows.sim import read_manifest
    outdir = Path(outdir).resolve()
    manifest = read_manifest(outdir)
    return (_build if simulator == "verilator" else _build_icarus)(outdir, manifest)


def _hex_lines(words: np.ndarray, count: int) -> str:
    """``[n, chunks]`` 32-bit words as one hexadecimal number per line (least significant chunk first)."""
    if words.shape[1] <= 2:
        values = words[:, 0].astype(np.uint64)
        if words.shape[1] == 2:
            values |= words[:, 1].astype(np.uint64) << np.uint64(32)
        return "".join(f"{int(v):x}\n" for v in values)
    lines = []
    for row in words:
        v = 0
        for i, chunk in enumerate(row.tolist()):
            v |= int(chunk) << (32 * i)
        lines.append(f"{v:x}\n")
    return "".join(lines)


def _read_hex(path: Path, chunks: int) -> np.ndarray:
    """The output words a Verilog testbench wrote (hex lines) as ``[n, chunks]``; an unknown (x/z) bit
    is an error naming the output."""
    lines = path.read_text().split()
    out = np.zeros((len(lines), chunks), dtype=np.uint32)
    for k, line in enumerate(lines):
        try:
            v = int(line, 16)
        except ValueError:
            raise RtlgenError(f"output {k} of the core has unknown bits (x or z): out_data = {line}") from None
        for i in range(chunks):
            out[k, i] = (v >> (32 * i)) & 0xFFFFFFFF
    return out


def run_batch(outdir, in_codes, expected=None, *, seed: int = 1, gap: float = 0.0,
              work_dir=None, simulator: str = "verilator") -> tuple[np.ndarray, dict]:
    """Run ``in_codes`` ([N, input.count]) through the core in ``outdir`` on the batch engine
    (``simulator``: ``verilator``, a compiled C++ testbench, or ``icarus``, a Verilog one).

    Returns the output codes ([N, output.count] int64) and the run's figures
    (``cycles``, ``seconds``, ``vectors_per_second``, ``build_seconds``,
    ``mismatches``).  A protocol error, or with ``expected`` a mismatch, raises
    :class:`~rtlgen.errors.RtlgenError` naming the first failing vector.
    """
    from rtlgen.flows.sim import _codes_array, read_manifest
    outdir = Path(outdir).resolve()
    manifest = read_manifest(outdir)
    for side in ("input", "output"):
        if int(manifest[side]["width"]) > 64:
            raise RtlgenError(f"the batch engine takes elements of up to 64 bits; this core's {side} elements "
                              f"have {manifest[side]['width']}: use the cocotb engine (--engine cocotb)")
    if not 0.0 <= float(gap) < 1.0:
        raise RtlgenError(f"gap must be in [0, 1), got {gap}")
    ins = _codes_array(in_codes, manifest["input"], "input")
    exp = None
    if expected is not None:
        exp = _codes_array(expected, manifest["output"], "expected")
        if exp.shape[0] != ins.shape[0]:
            raise RtlgenError(f"{exp.shape[0]} expected vectors given for {ins.shape[0]} input vectors")
    if simulator not in ("verilator", "icarus"):
        raise RtlgenError(f"the batch engine runs on verilator or icarus, not {simulator!r}")
    tools.ensure_simulator(simulator)
    t0 = time.perf_counter()
    exe = _build(outdir, manifest) if simulator == "verilator" else _build_icarus(outdir, manifest)
    build_seconds = time.perf_counter() - t0

    words, count, per_vector = frame_words(ins, manifest)
    in_width = int(manifest["input"]["width"])
    out_spec = manifest["output"]
    temporary = work_dir is None
    wdir = Path(tempfile.mkdtemp(prefix="rtlgen-batch-")) if temporary else Path(work_dir)
    wdir.mkdir(parents=True, exist_ok=True)
    try:
        packed = pack_words(words, in_width)
        n = len(ins)
        latency, ii = int(manifest["latency"]), int(manifest.get("ii", 1))
        gap_ppm = int(round(float(gap) * 1_000_000))
        if simulator == "verilator":
            packed.tofile(wdir / "in.bin")
            argv = [str(exe), str(wdir / "in.bin"), str(wdir / "out.bin"), str(len(words)), str(per_vector),
                    str(latency), str(ii), str(gap_ppm), str(int(seed)), str(wdir / "progress.txt")]
        else:
            (wdir / "in.hex").write_text(_hex_lines(packed.reshape(len(words), -1), len(words)))
            argv = ["vvp", "-n", str(exe), f"+in={wdir / 'in.hex'}", f"+out={wdir / 'out.hex'}",
                    f"+words={len(words)}", f"+per_vector={per_vector}", f"+latency={latency}", f"+ii={ii}",
                    f"+gap={gap_ppm}", f"+seed={int(seed)}", f"+progress={wdir / 'progress.txt'}"]
        t1 = time.perf_counter()
        from rtlgen.flows.sim import _vector_progress
        with _vector_progress(wdir / "progress.txt", n, f"{simulator} (batch)"):
            res = tools.run_group(argv, cwd=wdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - t1
        try:
            figures = json.loads(res.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RtlgenError(f"the batch testbench of {manifest['top']} failed (status {res.returncode}): "
                              f"{res.stderr.decode(errors='replace').strip()[:500]}") from None
        chunks = _chunks(int(manifest["ports"]["out_data"]))
        if simulator == "verilator":
            raw = np.fromfile(wdir / "out.bin", dtype=np.uint32).reshape(-1, chunks)
        else:
            raw = _read_hex(wdir / "out.hex", chunks)
            none = 2 ** 64 - 1
            figures.update(stop=STOP_REASONS.get(figures["stop"], str(figures["stop"])),
                           latency_min=-1 if figures["latency_min"] == none else figures["latency_min"],
                           latency_max=figures["latency_max"] if figures["outputs"] else -1,
                           min_spacing=-1 if figures["min_spacing"] == none else figures["min_spacing"])
        out = unpack_words(raw, int(out_spec["width"]), int(out_spec["count"]), bool(out_spec.get("signed", False)))
        if figures["errors"]:
            first = res.stderr.decode(errors="replace").strip().splitlines()
            raise RtlgenError(f"batch simulation of {manifest['top']}: {figures['errors']} protocol error(s); "
                              f"first: {first[0] if first else '?'}")
        mismatches = 0
        if exp is not None:
            bad = np.nonzero(np.any(out != exp, axis=1))[0]
            mismatches = int(len(bad))
            if mismatches:
                k = int(bad[0])
                raise RtlgenError(f"batch simulation of {manifest['top']}: {mismatches} of {n} vectors differ from "
                                  f"the golden model; first: vector {k}, input {ins[k].tolist()}, expected "
                                  f"{exp[k].tolist()}, got {out[k].tolist()}")
        figures.update(seconds=seconds, build_seconds=build_seconds, mismatches=mismatches,
                       vectors_per_second=n / seconds if seconds > 0 else float("inf"))
        return out, figures
    finally:
        if temporary:
            shutil.rmtree(wdir, ignore_errors=True)
