"""Exception types for mistakes in what the user gave the pipeline.

`pipeline/run.py` prints these as a single line (no traceback): the message must name the
file, split or config key at fault and say what to do about it. Anything else is a bug
and keeps its traceback.
"""


class UserInputError(RuntimeError):
    """Something the user can fix in their data or config."""


class InputDataError(UserInputError):
    """Input data that the pipeline cannot train on (missing, empty, not UTF-8, ...)."""


class ConfigValueError(UserInputError):
    """A config value that only turns out wrong once the data is known."""
