"""`train.precision: auto` and the other speed settings resolve per machine, and bad ones fail."""

import pytest

from components.errors import ConfigError
from components.minigpt import training
from pipeline.config import load_config


@pytest.mark.parametrize(
    "gpu, bf16_cpu, expected",
    [(True, False, "mixed_bfloat16"), (False, True, "mixed_bfloat16"), (False, False, "float32")],
)
def test_auto_precision_is_bf16_where_the_hardware_has_it(monkeypatch, gpu, bf16_cpu, expected):
    monkeypatch.setattr(training, "has_gpu", lambda: gpu)
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: bf16_cpu)
    assert training.resolve_settings("auto", None, 1) == (expected, None, 1)
    # An explicit choice is kept as it is.
    assert training.resolve_settings("float32", True, 4) == ("float32", True, 4)


def test_cpu_bf16_is_read_from_the_cpu_flags():
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    assert training.cpu_has_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_unknown_precision_is_rejected_at_load_and_at_resolve():
    with pytest.raises(ConfigError, match="train.precision: must be one of auto, float32"):
        load_config(None, ["train.precision=fp8"])
    with pytest.raises(ValueError, match="precision must be one of"):
        training.resolve_settings("fp8", None, 1)
    with pytest.raises(ConfigError, match="train.jit_compile: must be true or false"):
        load_config(None, ["train.jit_compile=maybe"])
    assert load_config(None, ["train.jit_compile=null"]).train.jit_compile is None
    with pytest.raises(ConfigError, match="train.steps_per_execution: must be positive"):
        load_config(None, ["train.steps_per_execution=0"])
