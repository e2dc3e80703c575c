"""Exception types for mistakes in what the user gave the pipeline.

`pipeline/run.py` prints these as a single line (no traceback): the message must name the
file, split or config key at fault and say what to do about it. Anything else is a bug
and keeps its traceback.
"""


class UserInputError(RuntimeError):
    """Something the user can fix in their data or config."""


class InputDataError(UserInputError):
    """Input data that the pipeline cannot train on (missing, empty, not UTF-8, ...)."""


class ConfigError(UserInputError):
    """A config key holds a bad value; the message names the key and the problem.

    Raised when the config is loaded, or by a component for a value that only turns out
    wrong once the data is known (a decoder's `k` above the learned vocabulary).
    """

    def __init__(self, key: str, problem: str):
        super().__init__(f"config error: {key}: {problem}")
        self.key = key


class MachineError(UserInputError):
    """This machine cannot do what the run needs of it (a GPU the driver lists that the
    Keras backend cannot use): the message names what is missing and how to look."""


class PlatformError(UserInputError):
    """A cloud platform refused or could not be reached (credentials, network, quota):
    the compiled spec is fine and kept; the message says where it is and what failed."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, at most `limit` characters: what a
    one-line error quotes of a library's multi-line message (or its type, if empty)."""
    text = getattr(error, "message", None) or str(error)  # tf.errors.OpError keeps it in .message
    return (text.strip().splitlines() or [type(error).__name__])[0][:limit]
