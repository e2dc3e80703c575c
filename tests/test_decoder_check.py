"""DecoderCheck: eval.decoders against the learned vocabulary, before any training."""

import json

import pytest
from tfx.dsl.components.base.base_executor import BaseExecutor
from tfx.types import Channel

from components.data.artifact_types import Vocabulary
from components.decoder_check import DecoderCheck
from components.runtime.errors import ConfigError


def _check(decoders, learned_size, tmp_path):
    vocabulary = Vocabulary()
    vocabulary.uri = str(tmp_path)
    vocabulary.set_int_custom_property("size", learned_size)
    component = DecoderCheck(vocabulary=Channel(type=Vocabulary), decoders=json.dumps(decoders))
    executor = DecoderCheck.EXECUTOR_SPEC.executor_class(BaseExecutor.Context(tmp_dir=str(tmp_path)))
    executor.Do({"vocabulary": [vocabulary]}, {}, component.exec_properties)


def test_counts_that_fit_the_learned_vocabulary_pass(tmp_path):
    _check({"top_k": {"k": 900}, "beam": {"num_beams": 900}, "greedy": {}}, 900, tmp_path)


@pytest.mark.parametrize(
    "decoders, key",
    [
        ({"top_k": {"k": 901}}, "eval.decoders.top_k.k"),
        ({"greedy": {}, "beam": {"num_beams": 1000}}, "eval.decoders.beam.num_beams"),
        ({"contrastive": {"k": 950, "alpha": 0.6}}, "eval.decoders.contrastive.k"),
    ],
)
def test_counts_above_the_learned_vocabulary_name_the_key(tmp_path, decoders, key):
    with pytest.raises(ConfigError) as err:
        _check(decoders, 900, tmp_path)
    assert err.value.key == key
    assert "exceeds the learned vocabulary (900 tokens)" in str(err.value)
