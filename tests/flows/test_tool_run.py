"""How the synthesis flow runs an external tool: its log, progress and time limit."""

from __future__ import annotations

import re
import sys
import threading
import time

from rtlgen.flows.synth import Tool, _run


def _python_tool(code: str) -> Tool:
    return Tool("fake", "native", (sys.executable, "-c", code), sys.executable)


def test_timeout_stops_a_silent_tool(tmp_path):
    # one line, then silence: the time limit must hold without further output (the line is built
    # at run time: the command line, at the top of the log, must not contain it)
    tool = _python_tool("import time; print('plac' + 'ing', flush=True); time.sleep(60)")
    log = tmp_path / "tool.log"
    start = time.monotonic()
    rc = _run(tool, [], tmp_path, log, None, None, timeout=1.0)
    elapsed = time.monotonic() - start
    assert rc == -1
    assert elapsed < 30
    text = log.read_text()
    assert "\nplacing\n" in text
    assert "[stopped after 1 s]" in text


def test_log_follows_the_tool_and_progress_sees_steps(tmp_path):
    # the tool waits for a file the test writes once the log shows its first line (the line is
    # built at run time: the command line, at the top of the log, must not contain it)
    go = tmp_path / "go"
    tool = _python_tool(f"import os, time\nprint('Info: Running ' + 'placer', flush=True)\n"
                        f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\nprint('done')")
    log = tmp_path / "tool.log"
    seen = []
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "rc", _run(tool, [], tmp_path, log, seen.append, re.compile(r"^Info: (Running placer)"), timeout=60.0,
                   every=0.0)))
    worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (log.exists() and "\nInfo: Running placer\n" in log.read_text()):
        time.sleep(0.05)
    shown = log.read_text()
    go.write_text("")
    worker.join(60)
    assert "\nInfo: Running placer\n" in shown      # written while the tool still ran
    assert result["rc"] == 0
    assert "done" in log.read_text() and "[exit status 0" in log.read_text()
    assert len(seen) == 1 and "fake: Running placer" in seen[0]


def test_nextpnr_status_lines_become_progress(tmp_path):
    # lines as nextpnr-ecp5 0.11 prints them while placing (HeAP, static) and routing (router1, router2)
    from rtlgen.flows.synth import _NEXTPNR_STATUS
    lines = [
        "Info:     at iteration #5, type ALL: wirelen solved = 158869, spread = 865862, legal = 898991; time = 7.25s",
        "Info: overlap: COMB=82.6%, FF=82.0%, RAM=0.0%, MUL=0.0%",
        "Info: Routing 119480 arcs.",
        "Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total(sec)|",
        "Info:      76000 |    45150      30849 |  667   333 |    110959|      66.06    1416.95|",
        "Info:     iter=3 wires=698969 overused=61780 overuse=75592 tmgfail=11008 archfail=NA",
    ]
    tool = _python_tool(f"print({chr(10).join(lines)!r})")
    seen = []
    assert _run(tool, [], tmp_path, tmp_path / "tool.log", seen.append, None, timeout=60.0,
                status=_NEXTPNR_STATUS, status_every=0.0) == 0
    said = [s.split(": ", 1)[1].rsplit(" [", 1)[0] for s in seen]
    assert said == ["placing: HeAP iteration 5, wire length 898,991",
                    "placing (static): 82.6 % of the logic cells still overlap",
                    "routing (router1): 76,000 iterations, 110,959 arcs to route",
                    "routing (router2): pass 3, 61,780 wires overused"]
    # at most one status line per status_every seconds
    seen.clear()
    assert _run(tool, [], tmp_path, tmp_path / "tool.log", seen.append, None, timeout=60.0,
                status=_NEXTPNR_STATUS, status_every=3600.0) == 0
    assert seen == []
