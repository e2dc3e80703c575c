"""VocabGen: a Beam component that learns the WordPiece vocabulary."""

from __future__ import annotations

import json
from typing import Sequence

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.data.artifact_types import Vocabulary
from components.runtime.cache_key import CODE_DIGEST_KEY, CODE_DIGEST_PARAMETER
from components.vocab_gen import executor


class VocabGenSpec(ComponentSpec):
    PARAMETERS = {
        executor.VOCABULARY_SIZE_KEY: ExecutionParameter(type=int),
        executor.LOWERCASE_KEY: ExecutionParameter(type=int),
        executor.RESERVED_TOKENS_KEY: ExecutionParameter(type=str),
        executor.SOURCE_KEY: ExecutionParameter(type=str),
        CODE_DIGEST_KEY: CODE_DIGEST_PARAMETER,
    }
    INPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {executor.VOCABULARY_KEY: ChannelParameter(type=Vocabulary)}


class VocabGen(base_beam_component.BaseBeamComponent):
    """Learns `vocab.txt` from the `train` split, identical to keras_nlp's learner, or, with
    `source="champion"`, keeps the champion's when it was learned with the same settings."""

    SPEC_CLASS = VocabGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        vocabulary_size: int,
        reserved_tokens: Sequence[str],
        lowercase: bool = True,
        source: str = "learn",
        code_digest: str = "",
    ):
        """Builds the component.

        Args:
          examples: Examples channel with a `train` split of tf.Example{text}.
          vocabulary_size: int, the largest vocabulary to learn (reserved tokens included).
          reserved_tokens: tokens placed first, in order; "[PAD]" must be first (id 0).
          lowercase: bool, lowercase before splitting into words.
          source: "learn", or "champion": keep the vocabulary of the champion of the
            moment (`components.tracking.champion`) if it was learned with these
            settings, else learn.
          code_digest: the digest of the executor's code (`components.runtime.cache_key`).

        Raises:
          ValueError: if the size does not exceed the number of reserved tokens.
        """
        if vocabulary_size <= len(reserved_tokens):
            raise ValueError(
                f"vocabulary_size ({vocabulary_size}) must exceed the number of reserved "
                f"tokens ({len(reserved_tokens)})."
            )
        spec = VocabGenSpec(
            examples=examples,
            source=source,
            vocabulary_size=vocabulary_size,
            lowercase=int(lowercase),
            reserved_tokens=json.dumps(list(reserved_tokens)),
            code_digest=code_digest,
            vocabulary=types.Channel(type=Vocabulary),
        )
        super().__init__(spec=spec)
