"""The SavedModel's `generate` signature: string prompts in, generated strings out.

For servers that run plain TensorFlow (TF Serving, a `tf.saved_model.load` in any
process with tensorflow and tensorflow-text installed): tokenizing, the cached greedy
decode and detokenizing all happen in the graph, by the same rules as the Python path
(`TextCodec.prompt_ids`, `decoding.pad_after_end`): [BOS] + a prompt's last
`num_tokens // 2` WordPiece tokens, then `num_tokens` generated after it at most, a
generated [PAD] ending the text. The decoder is fixed at export: greedy (no random state
to keep in a SavedModel); the MLflow text model offers every decoder.
"""

from __future__ import annotations

import re

import keras
import tensorflow as tf

from components.minigpt.cached_decoding import CachedGenerator
from components.minigpt.decoding import make_sampler
from components.minigpt.model import PAD_ID
from components.minigpt.tokenizer import BOS, TextCodec

SIGNATURE = "generate"


def add_generate_endpoint(archive: keras.export.ExportArchive, model: keras.Model, codec: TextCodec, num_tokens: int):
    """Adds `generate(prompts: string[B]) -> string[B]` to `archive` (which tracks `model`)."""
    codec.tokenizer(["built"])  # a Keras layer is built by its first call; export needs it built
    archive.track(codec.tokenizer)
    generator = CachedGenerator(model, codec.bos_id, num_tokens)
    sampler = make_sampler("greedy", {}, seed=0)  # the Evaluator's greedy
    length, max_prompt = num_tokens + 1, num_tokens // 2

    def generate(prompts):
        tokens = tf.cast(codec.tokenizer(prompts), tf.int32)  # (B, seq_len), [PAD]-padded
        batch = tf.shape(tokens)[0]
        counts = tf.reduce_sum(tf.cast(tokens != PAD_ID, tf.int32), axis=1)
        # The last `max_prompt` tokens of each prompt.
        first = tf.maximum(counts - max_prompt, 0)
        positions = first[:, None] + tf.range(max_prompt)[None, :]
        kept = tf.gather(tokens, tf.minimum(positions, tf.shape(tokens)[1] - 1), batch_dims=1)
        kept = tf.where(positions < counts[:, None], kept, PAD_ID)
        prompt = tf.concat(
            [tf.fill([batch, 1], codec.bos_id), kept, tf.fill([batch, length - 1 - max_prompt], PAD_ID)], axis=1
        )
        prompt_lengths = tf.reduce_sum(tf.cast(prompt != PAD_ID, tf.int32), axis=1)
        out = generator._decode(sampler, prompt, tf.reduce_min(prompt_lengths))  # pylint: disable=protected-access
        out = tf.cast(out, tf.int32)
        generated = tf.range(length)[None, :] >= prompt_lengths[:, None]
        ended = tf.cumsum(tf.cast((out == PAD_ID) & generated, tf.int32), axis=1) > 0
        out = tf.where(ended, PAD_ID, out)
        text = codec.tokenizer.detokenize(out)
        text = tf.strings.regex_replace(text, r"\s*\[PAD\]", "")
        return tf.strings.strip(tf.strings.regex_replace(text, "^" + re.escape(BOS), ""))

    archive.add_endpoint(SIGNATURE, generate, input_signature=[tf.TensorSpec([None], tf.string, name="prompts")])
