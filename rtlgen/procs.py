"""Child processes that a library starts and does not stop on an interrupt.

Amaranth converts a design to Verilog by running its Yosys (a WebAssembly
build that does not see Ctrl-C) with ``subprocess.Popen`` and does not stop
it when the conversion is interrupted.  :func:`stop_children_on_interrupt`
wraps such a call: on Ctrl-C or SIGTERM (``KeyboardInterrupt``) it sends
SIGTERM to this process's children before the interrupt goes on.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

__all__ = ["signal_children", "stop_children_on_interrupt"]


def signal_children(sig: int = signal.SIGTERM, groups: bool = False) -> None:
    """Send ``sig`` to the child processes of this process (found in ``/proc``; elsewhere none);
    with ``groups``, to the whole process group of a child that leads one."""
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == me:
                pid = int(name)
                if groups and os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
        except (OSError, ValueError, IndexError):
            continue


@contextlib.contextmanager
def stop_children_on_interrupt() -> Iterator[None]:
    """Stop this process's children when the body is interrupted (Ctrl-C, SIGTERM)."""
    try:
        yield
    except KeyboardInterrupt:
        signal_children(signal.SIGTERM)
        raise
