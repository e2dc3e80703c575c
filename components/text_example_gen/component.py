"""TextExampleGen: a FileBasedExampleGen over one-paragraph-per-line text files."""

from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.components import FileBasedExampleGen
from tfx.components.example_gen import driver, utils
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.runtime.cache_key import CODE_DIGEST_KEY, CODE_DIGEST_PARAMETER
from components.text_example_gen import executor
from components.text_example_gen.executor import DEDUP_KEY, EXACT_DEDUP, MAX_LENGTH_KEY, MIN_LENGTH_KEY


class TextExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGen's spec plus the line-length filter's two bounds and dedup."""

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        MIN_LENGTH_KEY: ExecutionParameter(type=int),
        MAX_LENGTH_KEY: ExecutionParameter(type=int),
        DEDUP_KEY: ExecutionParameter(type=str, optional=True),
        CODE_DIGEST_KEY: CODE_DIGEST_PARAMETER,
    }


class TextExampleGen(FileBasedExampleGen):
    """Reads `train`/`eval` (and `test`) text files into gzip TFRecords of tf.train.Example{text}.

    The file-based driver fingerprints the input files, so a changed corpus invalidates
    the cache and an unchanged one is reused. It is a `FileBasedExampleGen` so that
    TFX's Kubeflow/Vertex compiler gives it the same: it adds the driver's file
    fingerprinting (`preCacheCheck`) only to that class's subclasses, and without it a
    scheduled run whose corpus changed at the same `gs://` path was served from the cache.
    Its own spec (the length filter's bounds) is built here, not by
    `FileBasedExampleGen.__init__`, which knows only TFX's spec.
    """

    SPEC_CLASS = TextExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.FileBasedDriver

    def __init__(
        self,
        input_base: str,
        train_pattern: str,
        eval_pattern: str,
        min_training_seq_len: int,
        max_line_bytes: int = 1_000_000,
        test_pattern: Optional[str] = None,
        dedup: str = "none",
        code_digest: str = "",
    ):
        """Builds the component.

        Args:
          input_base: directory (local or gs://) holding the split files.
          train_pattern: file name or glob of the training split, relative to input_base.
          eval_pattern: file name or glob of the evaluation split.
          min_training_seq_len: int, keep lines strictly longer than this many bytes.
          max_line_bytes: int, skip (and count) lines longer than this: a "paragraph" of
            megabytes is a broken file, and would cost minutes in every Beam step.
          test_pattern: file name or glob of the held-out test split; None: no test split.
          dedup: "exact" drops exact duplicate lines within each split (one copy kept,
            the others counted as `<split>_lines_duplicate`); "none" keeps every line.
          code_digest: the digest of the executor's code (`components.runtime.cache_key`).

        Raises:
          ValueError: on a negative length, bounds that keep nothing, an empty pattern or
            an unknown dedup.
        """
        if min_training_seq_len < 0:
            raise ValueError(f"min_training_seq_len must be >= 0, got {min_training_seq_len}.")
        if max_line_bytes <= min_training_seq_len:
            raise ValueError(f"max_line_bytes ({max_line_bytes}) must exceed min_training_seq_len.")
        if dedup not in ("none", EXACT_DEDUP):
            raise ValueError(f"dedup must be 'none' or '{EXACT_DEDUP}', got {dedup!r}.")
        if not train_pattern or not eval_pattern:
            raise ValueError("train_pattern and eval_pattern must both be set.")
        patterns = {"train": train_pattern, "eval": eval_pattern, "test": test_pattern}
        input_config = example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name=name, pattern=p) for name, p in patterns.items() if p]
        )
        spec = TextExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=utils.make_default_output_config(input_config),
            custom_config=None,
            range_config=None,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            min_training_seq_len=min_training_seq_len,
            max_line_bytes=max_line_bytes,
            dedup=dedup,
            code_digest=code_digest,
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
