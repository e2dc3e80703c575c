"""How fast the training step runs: precision, XLA and steps per call, with "auto" resolved.

None of these change what a step computes beyond rounding (bf16); they are chosen per
machine. The figures behind the "auto" choices are in BENCHMARKS.md
(`benchmarks/train_step.py`).
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, NamedTuple, Optional

from components.runtime.errors import MachineError

if TYPE_CHECKING:  # the config loader imports this module: no Keras at import time
    import keras

    from components.minigpt.model import GPTConfig

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
LEARNING_RATE_SCHEDULES = ("constant", "cosine")
# Where the cosine schedule ends, as a fraction of the peak rate (nanoGPT's min_lr ratio).
COSINE_FLOOR = 0.1
BACKENDS = ("auto", "tensorflow", "jax")
# The NVIDIA driver lists one folder per GPU here, whatever the Python libraries can see.
NVIDIA_GPUS_DIR = "/proc/driver/nvidia/gpus"


class TrainingSettings(NamedTuple):
    precision: str  # a Keras dtype policy: "float32", "mixed_bfloat16" or "mixed_float16"
    jit_compile: Optional[bool]  # None: Keras' "auto"
    steps_per_execution: int


# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) below its first bf16 matmul kernels.
_ISA_CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def cpu_has_bf16() -> bool:
    """True where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16) and
    oneDNN may use it: `ONEDNN_MAX_CPU_ISA=AVX2` (how one measures the AVX2 class on a
    newer CPU) leaves oneDNN no bf16 matmul, and XLA, which reads the CPU's own flags,
    would then ask it for one it cannot build (the process dies with SIGILL)."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ISA_CAPS_WITHOUT_BF16:
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def has_gpu() -> bool:
    """True if the Keras backend sees a GPU."""
    import keras  # pylint: disable=import-outside-toplevel

    if keras.backend.backend() == "jax":
        import jax  # pylint: disable=import-outside-toplevel

        return any(d.platform == "gpu" for d in jax.devices())
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def driver_gpu_count() -> int:
    """GPUs the NVIDIA driver reports, read without importing TensorFlow or JAX."""
    try:
        return len(os.listdir(NVIDIA_GPUS_DIR))
    except OSError:
        return 0


# What each backend says about the GPUs it can use, and why not.
_LIST_GPUS = {
    "jax": "import jax; print(jax.devices())",
    "tensorflow": "import tensorflow as tf; print(tf.config.list_physical_devices('GPU'))",
}


def check_gpus_usable() -> None:
    """Fails where the NVIDIA driver lists GPUs that the Keras backend cannot use.

    `backend: auto` picks JAX because the driver lists a GPU; if JAX's CUDA libraries do
    not load (no jax[cuda12] wheels, a driver too old for them), JAX falls back to the
    CPU with one warning, and a job that asked for a GPU would train for hours on its
    host's CPU without a word. Better to stop before the first step.

    Raises:
      MachineError: naming the listed GPUs, the backend and how to see why.
    """
    import keras  # pylint: disable=import-outside-toplevel

    listed = driver_gpu_count()
    if listed and not has_gpu():
        backend = keras.backend.backend()
        raise MachineError(
            f"the NVIDIA driver lists {listed} GPU(s) ({NVIDIA_GPUS_DIR}) but Keras' {backend} backend sees none, "
            f"so training would run on the CPU: its CUDA libraries did not load (see why: python -c "
            f"{_LIST_GPUS.get(backend, 'import keras')!r}); install the CUDA build of {backend} that the "
            "driver supports"
        )


def resolve_backend(backend: str) -> str:
    """`auto` is JAX where there is a GPU, else TensorFlow.

    On GPUs Keras' JAX backend is the fast one (docs/measurements.md §2: 1.8 ms a step on
    an H200); on CPUs TensorFlow measured faster (BENCHMARKS.md §1: JAX vs TensorFlow).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "jax" if driver_gpu_count() else "tensorflow"
    return backend


def resolve_settings(precision: str, jit_compile: Optional[bool], steps_per_execution: int) -> TrainingSettings:
    """`precision: auto` is bfloat16 on a GPU or a CPU with native bf16, else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = "mixed_bfloat16" if has_gpu() or cpu_has_bf16() else "float32"
    return TrainingSettings(precision, jit_compile, steps_per_execution)


def learning_rate_schedule(
    learning_rate: float, schedule: str, total_steps: int
) -> "float | keras.optimizers.schedules.LearningRateSchedule":
    """Adam's learning rate over the run: the reference's constant rate, or a cosine decay.

    `cosine` starts at `learning_rate` and falls along a half cosine to COSINE_FLOOR of it
    at `total_steps` (the run's epochs x steps per epoch). Unlike the speed settings this
    changes what is learned: it is kept because it reaches the reference's quality in less
    time (BENCHMARKS.md §3). The optimizer's step count is in its checkpoint, so a resumed
    run continues the schedule where it stopped.
    """
    if schedule not in LEARNING_RATE_SCHEDULES:
        raise ValueError(
            f"learning-rate schedule must be one of {', '.join(LEARNING_RATE_SCHEDULES)}, got {schedule!r}"
        )
    if schedule == "constant":
        return learning_rate
    import keras  # pylint: disable=import-outside-toplevel

    return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(total_steps, 1), alpha=COSINE_FLOOR)


def build_trainable_model(
    gpt: "GPTConfig",
    learning_rate: "float | keras.optimizers.schedules.LearningRateSchedule",
    settings: TrainingSettings,
    reference_loss: bool = False,
) -> "keras.Model":
    """The reference model in `settings.precision`, compiled with the reference's loss and
    metric and the step settings: what the Trainer and the benchmarks train. In
    mixed_float16 the optimizer scales the loss (`compile_model`), so that float16
    gradients do not underflow. `reference_loss`: as `compile_model`'s (for a benchmark's
    ablation)."""
    from components.minigpt.model import build_model, compile_model  # pylint: disable=import-outside-toplevel

    model = build_model(gpt, dtype=settings.precision)
    compile_model(model, learning_rate, settings.jit_compile, settings.steps_per_execution, reference_loss)
    count_real_rows(model)
    return model


def pads_partial_batches() -> bool:
    """Whether training and validation pad an epoch's last, smaller batch to the full batch
    size, with rows weighted 0 (`sequences.padded_batch`): on JAX.

    JAX compiles the train and eval steps once per input shape, so a short last batch
    costs a second compile of each: for the reference model on a CPU (batch 64, float32,
    2 shared AMD EPYC cores), 4.6 s for the train step and 0.8-0.9 s for the eval step, once
    per run (`jax_log_compiles`); on a GPU a step takes milliseconds and the compiles are
    most of a short run. The padded rows cost at most one step's compute per epoch. The
    padded batch computes the same loss, gradient, logged loss and perplexity. On
    TensorFlow the short batch stays: its CPU step is not XLA-compiled.
    """
    import keras  # pylint: disable=import-outside-toplevel

    return keras.backend.backend() == "jax"


def count_real_rows(model: "keras.Model") -> None:
    """On JAX, has the loss `fit` and `evaluate` log weigh each batch by its rows of nonzero
    sample weight, not by all its rows.

    Keras' logged `loss` is a running mean of the batches' losses, each weighted by the
    rows of its input (`_update_metrics_variables` of Keras 3.12's JAX trainer, which
    this replaces on `model` with the same update but that weight): the rows weighted 0
    that `sequences.padded_batch` adds would weigh a padded last batch as a full one.
    Without sample weights the weight is the rows of the input, as Keras has it. The
    replacement lives on this model object: a model loaded from a file has Keras' own, so
    call this again before evaluating a loaded model on padded batches.
    """
    import keras  # pylint: disable=import-outside-toplevel

    from components.minigpt.losses import weighted_rows  # pylint: disable=import-outside-toplevel

    if keras.backend.backend() != "jax":
        return
    replaced = getattr(type(model), "_update_metrics_variables", None)
    expected = ["metrics_variables", "unscaled_loss", "x", "y", "y_pred", "sample_weight"]
    if replaced is None or list(inspect.signature(replaced).parameters)[1:] != expected:
        raise RuntimeError(
            f"Keras {keras.__version__}'s JAX trainer has no _update_metrics_variables{tuple(expected)} to "
            "replace: the loss logged for padded batches would count their [PAD] rows. Pin the Keras this "
            "code was tested with (requirements/constraints.txt) or update count_real_rows."
        )

    def update_metrics_variables(metrics_variables, unscaled_loss, x, y, y_pred, sample_weight):
        variables = model.metrics_variables
        with keras.StatelessScope(state_mapping=list(zip(variables, metrics_variables))) as scope:
            if sample_weight is None:
                rows = next(i for i in keras.tree.flatten(x) if i is not None).shape[0]
            else:
                rows = weighted_rows(sample_weight)
            model._loss_tracker.update_state(unscaled_loss, sample_weight=rows)  # pylint: disable=protected-access
            logs = model.compute_metrics(x, y, y_pred, sample_weight)
        updated = [scope.get_current_value(v) for v in variables]
        return logs, [v.value if new is None else new for v, new in zip(variables, updated)]

    model._update_metrics_variables = update_metrics_variables  # pylint: disable=protected-access


def use_compilation_cache(cache_dir: str) -> bool:
    """Keeps the XLA programs JAX compiles in `cache_dir` (a local folder); returns whether
    it is on.

    A rerun of the same fit (same model, shapes, settings and jax version) then loads its
    programs instead of compiling them. On a GPU the compile is most of a short run: on an
    H200 the first epoch took 14.8 s with an empty cache and 1.8 s with a warm one, then
    ~0.7 s an epoch (docs/measurements.md §2). JAX only (TensorFlow's CPU step is not compiled). JAX
    keeps programs that took at least a second to compile.
    """
    import keras  # pylint: disable=import-outside-toplevel

    if keras.backend.backend() != "jax":
        return False
    import jax  # pylint: disable=import-outside-toplevel

    jax.config.update("jax_compilation_cache_dir", cache_dir)
    return True


def use_every_local_device(tensorflow_device_type: str = "GPU") -> int:
    """Trains on every local accelerator; returns how many. Call before building the model.

    Each batch is split over the devices, the weights are replicated, and the gradients
    are averaged, so a step learns what one device would:
    - JAX: Keras `DataParallel` over all local devices (GPUs, or forced CPU devices);
    - TensorFlow: `tf.distribute.MirroredStrategy`, made the default strategy, over the
      local devices of `tensorflow_device_type` (GPUs; the tests mirror two logical CPUs).
    With one device nothing changes.
    """
    import keras  # pylint: disable=import-outside-toplevel

    if keras.backend.backend() == "jax":
        devices = keras.distribution.list_devices()
        if len(devices) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return len(devices)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        devices = [d.name for d in tf.config.list_logical_devices(tensorflow_device_type)]
        if len(devices) > 1:
            tf.distribute.experimental_set_strategy(tf.distribute.MirroredStrategy(devices))
        return max(len(devices), 1)
    return 1
