"""The one exception type for problems in the user's input data.

`pipeline/run.py` prints these as a single line (no traceback): the message must name the
file or split at fault and say what to do about it.
"""


class InputDataError(RuntimeError):
    """Input data that the pipeline cannot train on (missing, empty, not UTF-8, ...)."""
