"""What a run prints: our progress by default, every library's chatter with `-v`.

By default a terminal shows one line when a component starts and one with its wall
time when it ends, our executors' INFO lines, Keras' epoch progress, warnings worth a
look, and the summary. Hidden unless `-v`: TensorFlow's C++ start-up lines ("Unable to
register cuDNN factory"), Google client libraries' FutureWarnings
about this Python version, MLflow's download progress bars and warnings, and a short
list of known, harmless library warnings (`KNOWN_NOISE`), in this process and in Beam's
workers. Not hidden: the four lines XLA's service logs when it first compiles (TensorFlow
2.16 writes them from C++ whatever TF_CPP_MIN_LOG_LEVEL says).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Dict

# Library warnings that say nothing a user can act on, matched anywhere in the message.
KNOWN_NOISE = (
    # TFX's resolver and Trainer, on every run.
    "ArtifactQuery.property_predicate is not supported",
    "Examples artifact does not have payload_format custom property",
    # Beam: an optional C extension, and an internal DoFn of its own.
    "Couldn't find python-snappy",
    "No iterator is returned by the process method",
    # The Evaluator compiles one decode function per decoder, on purpose.
    "triggered tf.function retracing",
    # MLflow's HTTP client, one line per retry of a call to a tracking server that is
    # down; components.tracking.buffered_run and pipeline/run.py say it once.
    "Retrying (JitteredRetry(",
)


def quiet_environment(verbose: bool) -> None:
    """Environment for this process and the ones it starts (Beam workers, the Trainer's
    child); call before TensorFlow is imported."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # TF's errors still raise in Python
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's own logger (its own handler, set up when it is imported): warnings such as
    # "Provided signature does not match the signature inferred from the type hint" (its
    # type-hint inference has no place for our `decoder` param; the logged signature is
    # the one that holds it) and pickling notices. Errors still show.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    warnings.filterwarnings("ignore", category=FutureWarning)


class _KnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in KNOWN_NOISE)


class _ComponentProgress(logging.Filter):
    """TFX's progress lines, one per component start and end (with its wall time);
    not its multi-page proto dumps."""

    def __init__(self):
        super().__init__()
        self._started: Dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        message = record.getMessage()
        if not message.startswith("Component "):
            return message.startswith(("Skipping component", "Cached"))
        name = message.split()[1]
        if message.endswith("is running."):
            self._started[name] = time.time()
            record.msg, record.args = f"{name}: started", ()
        elif message.endswith("is finished.") and name in self._started:
            record.msg, record.args = f"{name}: finished in {time.time() - self._started.pop(name):.1f} s", ()
        return True


def configure_logging(verbose: bool) -> None:
    """Our executors at INFO, TFX's progress lines, every other library at WARNING
    without `KNOWN_NOISE`; with `verbose`, everything at INFO."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("components").setLevel(logging.INFO)
    # Keras warns on every call that keras_hub's attention sub-layers drop the padding
    # mask; the decoder applies its own causal + padding mask, so the warning is noise.
    warnings.filterwarnings("ignore", message=".*does not support masking.*")
    if verbose:
        return
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel

    # Through absl's own verbosity flag: TensorFlow parses absl's flags when the Trainer
    # starts, which would reset a level set on the logger to WARNING.
    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("absl").addFilter(_ComponentProgress())
    noise = _KnownNoise()
    for handler in logging.getLogger().handlers:
        handler.addFilter(noise)
    # Beam's DirectRunner relays every worker's start-up warnings; they are not ours to fix.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
