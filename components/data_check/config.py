"""DataCheck's thresholds: the `data.checks` section of the pipeline config.

Here, not in `pipeline.config`, because the component reads them too (as
`components.minigpt.config.ModelConfig` is shared); importing it costs nothing.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DataChecksConfig:
    """Thresholds of DataCheck (`components.data_check`), which runs before the Trainer.

    A value past its threshold stops the run before training, a first run's too (only
    the drift needs a champion to compare with). Each default passes on every corpus this
    project ships or tests with, with margin: the measured values are in the comments.
    """

    # Share of each split's lines that pass the length filter (TextExampleGen's
    # lines_kept / lines_read). Measured 0.046 (embedded test split) to 0.83 (tiny corpus).
    min_kept_share: float = 0.02
    # Share of each split's tokens that are [UNK]. Measured 0 (embedded) to 0.0375 (the
    # tiny corpus's test split, whose 1000-token vocabulary misses some characters).
    max_unk_share: float = 0.1
    # Mean tokens per sequence, as a share of model.seq_len, in each split: lines this
    # short waste most of every training window. Measured 0.985 (embedded) and 1.0 (tiny).
    min_mean_tokens_share: float = 0.5
    # Exact duplicate paragraphs in the train split, as a share of its kept lines (set
    # data.dedup: exact to drop them). Measured 0 (embedded, tiny) to 0.00074 (28 of
    # 37,958 lines of a 105-book Gutenberg corpus).
    max_duplicate_share: float = 0.01
    # Share of the eval (and test) split's paragraphs that are also in the train split:
    # they bias its perplexity low. Measured 0 on every corpus; a stray shared paragraph
    # (an epigraph, a licence) may pass.
    max_leaked_share: float = 0.005
    # Jensen-Shannon divergence of the train split's token-id distribution from that of
    # the data the champion was trained on (TFDV's drift comparator). Measured 0.0023
    # between the embedded corpus's train and test splits (different books).
    max_drift: float = 0.05
