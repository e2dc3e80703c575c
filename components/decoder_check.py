"""DecoderCheck: `eval.decoders` against the learned vocabulary, before the Trainer runs.

A decoder's `k` or `num_beams` must not exceed the vocabulary, whose size is known only
once VocabGen has run. The config loader checks against `vocab.vocabulary_size`; a
corpus can yield fewer tokens than that, and training first would waste the run. The
Trainer cannot check it itself: the decoders would then be part of its cache key and a
new `k` would retrain the model. So this step runs right after VocabGen, as an upstream
dependency (not an input) of Tokenize and so of the Trainer: their cache keys stay
the same.
"""

# No `from __future__ import annotations`: TFX's @component reads the annotations as types.
import json

from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component

from components.data.artifact_types import Vocabulary
from components.minigpt.decoders import check_decoders


@component
def DecoderCheck(vocabulary: InputArtifact[Vocabulary], decoders: Parameter[str]) -> None:  # noqa: N802 (TFX names components in CamelCase)
    """Raises ConfigError naming the `eval.decoders` key whose value the vocabulary cannot hold.

    Args:
      vocabulary: VocabGen's output; its `size` property is the learned vocabulary size.
      decoders: JSON of `eval.decoders` (decoder name -> sampler parameters).
    """
    check_decoders(json.loads(decoders), vocabulary.get_int_custom_property("size"), "the learned vocabulary")
