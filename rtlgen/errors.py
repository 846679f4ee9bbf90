"""The one exception type for user errors, and the interrupt that SIGTERM raises.

Every problem caused by the user's input (a bad model file, an unsupported
layer, a malformed type string, a bad configuration, a tool that is missing)
raises :class:`RtlgenError`.  Its message is one line that names the
offending layer/node/key and says how to fix it; longer material (a tool's
log tail, a full parser message) goes into ``detail``, which the
command-line interface prints only with ``-v``.  The command-line interface
prints the message without a traceback and exits with status 2.

:class:`Terminated` is raised in the main thread when the process receives
SIGTERM.  It is a :class:`KeyboardInterrupt`, so every clean-up path that
handles Ctrl-C handles SIGTERM as well.
"""

from __future__ import annotations

__all__ = ["RtlgenError", "RtlgenWarning", "Terminated"]


class RtlgenError(Exception):
    """A user-facing error: bad model, bad configuration, unsupported feature.

    ``detail`` (optional, may span several lines) is supporting material such
    as the last lines of a tool's log; the message itself stays one line.
    """

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail


class RtlgenWarning(UserWarning):
    """A setting that has no effect, or a model that builds but is probably not what was meant."""


class Terminated(KeyboardInterrupt):
    """SIGTERM received: unwinds like Ctrl-C (exit status 143 instead of 130)."""
