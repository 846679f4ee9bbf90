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
