"""Text <-> token ids, as the reference does it: WordPiece, then a [BOS]-prepending packer."""

from __future__ import annotations

from typing import List

import keras_hub
import numpy as np

from components.data.formats import BOS_TOKEN as BOS


class TextCodec:
    """Tokenizes lines into (features, labels) and detokenizes generated ids.

    features = [BOS] + tokens (length seq_len); labels = tokens (length seq_len): the model
    learns to predict token t from tokens < t.
    """

    def __init__(self, vocabulary: List[str], seq_len: int, lowercase: bool = True):
        self.tokenizer = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=vocabulary, sequence_length=seq_len, lowercase=lowercase
        )
        self.bos_id = self.tokenizer.token_to_id(BOS)
        self.packer = keras_hub.layers.StartEndPacker(sequence_length=seq_len, start_value=self.bos_id)

    def features_and_labels(self, lines):
        """String tensor (B,) -> int tensors ((B, T), (B, T))."""
        labels = self.tokenizer(lines)
        return self.packer(labels), labels

    def prompt_ids(self, texts: List[str], length: int, max_prompt_tokens: int) -> np.ndarray:
        """(B, length) prompts: [BOS] + each text's last `max_prompt_tokens` tokens, then [PAD]."""
        tokens = np.asarray(self.tokenizer(texts))
        prompts = np.zeros((len(texts), length), dtype="int32")
        prompts[:, 0] = self.bos_id
        for row, ids in enumerate(tokens):
            kept = ids[ids != 0][-max_prompt_tokens:] if max_prompt_tokens else ids[:0]
            prompts[row, 1 : 1 + len(kept)] = kept
        return prompts

    def detokenize(self, token_ids) -> List[str]:
        """Int ids (B, T) -> one string per row, without [PAD] tokens."""
        texts = self.tokenizer.detokenize(token_ids)
        return [_as_str(t) for t in texts]


def _as_str(text) -> str:
    text = text.numpy() if hasattr(text, "numpy") else text
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    return text.replace(" [PAD]", "").strip()
