"""Tokenize: a Beam component that turns the text splits into token-id splits, once."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.data.artifact_types import Vocabulary
from components.runtime.cache_key import CODE_DIGEST_KEY, CODE_DIGEST_PARAMETER
from components.tokenize import executor


class TokenizeSpec(ComponentSpec):
    PARAMETERS = {
        executor.SEQ_LEN_KEY: ExecutionParameter(type=int),
        executor.LOWERCASE_KEY: ExecutionParameter(type=int),
        CODE_DIGEST_KEY: CODE_DIGEST_PARAMETER,
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.VOCABULARY_KEY: ChannelParameter(type=Vocabulary),
    }
    OUTPUTS = {executor.TOKEN_IDS_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class Tokenize(base_beam_component.BaseBeamComponent):
    """WordPiece ids of every line, truncated to `seq_len`, as Examples with the same splits.

    The artifact records per split: `<split>_sequences`, `<split>_tokens`,
    `<split>_unk_tokens` and `<split>_truncated_sequences` (lines longer than `seq_len`
    tokens), plus TextExampleGen's line counts.
    """

    SPEC_CLASS = TokenizeSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        vocabulary: types.BaseChannel,
        seq_len: int,
        lowercase: bool,
        code_digest: str = "",
    ):
        """Builds the component.

        Args:
          examples: text Examples (tf.Example{text}) from TextExampleGen.
          vocabulary: the Vocabulary learned by VocabGen.
          seq_len: int, token ids kept per line (the model's sequence length).
          lowercase: bool, lowercase before splitting, as when the vocabulary was learned.
          code_digest: the digest of the executor's code (`components.runtime.cache_key`).

        Raises:
          ValueError: if seq_len is not positive.
        """
        if seq_len <= 0:
            raise ValueError(f"seq_len must be positive, got {seq_len}.")
        spec = TokenizeSpec(
            examples=examples,
            vocabulary=vocabulary,
            seq_len=seq_len,
            lowercase=int(lowercase),
            code_digest=code_digest,
            token_ids=types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
