"""The one exception type for user errors.

Every problem caused by the user's input (a bad model file, an unsupported
layer, a malformed type string, a bad configuration, a tool that is missing)
raises :class:`RtlgenError`.  Its message names the offending layer/node/key
and says how to fix it.  The command-line interface prints the message
without a traceback and exits with status 2.
"""


class RtlgenError(Exception):
    """A user-facing error: bad model, bad configuration, unsupported feature."""
