"""VocabGen: the Beam job must give keras_nlp's vocabulary, token for token."""

import collections
import json
import os

import apache_beam as beam
import keras_nlp
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import Channel, standard_artifacts

from components.data.artifact_types import Vocabulary, read_vocabulary
from components.vocab_gen import executor
from components.vocab_gen.component import VocabGen
from components.vocab_gen.wordpiece import ComputeVocabulary, learn_vocabulary, pretokenize_lines
from pipeline.corpus import EMBEDDED_CORPUS_DIR
from tests.conftest import REPO_ROOT, TINY_CORPUS, read_long_lines, register_champion, write_examples

RESERVED = ["[PAD]", "[UNK]", "[BOS]"]
AWKWARD_CORPUS = os.path.join(os.path.dirname(__file__), "data", "awkward_corpus.txt")


def keras_nlp_vocabulary(lines, size):
    """The reference's call: compute_word_piece_vocabulary on a batched tf.data of lines."""
    return keras_nlp.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(lines).batch(64),
        vocabulary_size=size,
        lowercase=True,
        reserved_tokens=RESERVED,
    )


@pytest.mark.parametrize(
    "path, size",
    [
        (os.path.join(TINY_CORPUS, "train.txt"), 5000),  # the learner stops short of 5000
        (os.path.join(TINY_CORPUS, "train.txt"), 300),  # truncation at the requested size
        (os.path.join(EMBEDDED_CORPUS_DIR, "valid.txt"), 5000),  # 338 real paragraphs
        (AWKWARD_CORPUS, 400),  # CJK, accents, controls, long words (tests/test_pretokenizer.py)
    ],
)
def test_vocabulary_identical_to_keras_nlp(path, size):
    lines = read_long_lines(path)
    expected = keras_nlp_vocabulary(lines, size)
    with test_pipeline.TestPipeline() as p:
        vocab = p | beam.Create(lines) | ComputeVocabulary(size, True, RESERVED)
        assert_that(vocab, equal_to([expected]))
    assert expected[:3] == RESERVED and len(expected) <= size


def test_learner_ignores_the_order_counts_arrive_in():
    counts = [(b"the", 50), (b"then", 7), (b"them", 7), (b"a", 30), (b"an", 9)]
    assert learn_vocabulary(counts, 50, RESERVED) == learn_vocabulary(counts[::-1], 50, RESERVED)


def test_pretokenize_matches_keras_rules():
    words = pretokenize_lines([b"Hello, World!", b"It's 3pm."], lowercase=True)
    assert words == [b"hello", b",", b"world", b"!", b"it", b"'", b"s", b"3pm", b"."]


def _run_vocab_gen(tmp_path, lines, source="learn", size=5000, name="vocab"):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = '["train", "eval"]'
    write_examples(tmp_path / "examples" / "Split-train" / "data.gz", lines)
    vocabulary = Vocabulary()
    vocabulary.uri = str(tmp_path / name)
    examples_channel = Channel(type=standard_artifacts.Examples)
    component = VocabGen(examples=examples_channel, vocabulary_size=size, reserved_tokens=RESERVED, source=source)
    executor.Executor(BaseBeamExecutor.Context(tmp_dir=str(tmp_path))).Do(
        {"examples": [examples]}, {"vocabulary": [vocabulary]}, component.exec_properties
    )
    return vocabulary, read_vocabulary(os.path.join(vocabulary.uri, Vocabulary.FILE_NAME))


def test_executor_writes_vocab_file(tmp_path):
    lines = read_long_lines(os.path.join(TINY_CORPUS, "train.txt"))
    vocabulary, written = _run_vocab_gen(tmp_path, lines)
    assert written == keras_nlp_vocabulary(lines, 5000)
    assert vocabulary.get_int_custom_property("size") == len(written)
    assert vocabulary.get_string_custom_property("source") == "learned"


def test_the_champions_vocabulary_is_kept_when_learned_with_the_same_settings(tmp_path, monkeypatch):
    """vocab.source: champion: new data, the champion's tokens (so models stay comparable)."""
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "exp")
    lines = read_long_lines(os.path.join(TINY_CORPUS, "train.txt"))
    # No champion yet: learned.
    vocabulary, written = _run_vocab_gen(tmp_path, lines, "champion", name="first")
    assert written == keras_nlp_vocabulary(lines, 5000)
    assert vocabulary.get_string_custom_property("source") == "learned"
    assert vocabulary.get_string_custom_property("champion_version") == "none"
    champion_vocab = [*RESERVED, "the", "cat", "##s", "."]
    version = register_champion(tracking_uri, str(tmp_path / "champion"), champion_vocab)
    vocabulary, written = _run_vocab_gen(tmp_path, lines, "champion", name="kept")
    assert written == champion_vocab
    assert vocabulary.get_string_custom_property("source") == f"champion version {version}"
    # Asked for another size than the champion's, the run learns its own; so it does with
    # source: learn.
    vocabulary, written = _run_vocab_gen(tmp_path, lines, "champion", size=300, name="vocab-300")
    assert written == keras_nlp_vocabulary(lines, 300) and vocabulary.get_string_custom_property("source") == "learned"
    _, written = _run_vocab_gen(tmp_path, lines, "learn", name="learned")
    assert written == keras_nlp_vocabulary(lines, 5000)


def test_component_rejects_vocabulary_not_larger_than_reserved():
    with pytest.raises(ValueError, match="must exceed the number of reserved tokens"):
        VocabGen(examples=Channel(type=standard_artifacts.Examples), vocabulary_size=3, reserved_tokens=RESERVED)


def test_beam_cut_to_the_most_frequent_words_matches_the_learner(monkeypatch):
    """Above the learner's input cut the Beam job keeps the most frequent words (ties
    alphabetical) before one worker learns; tensorflow_text given the counts in that
    order, with the same cut, learns the same vocabulary."""
    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as reference

    from components.vocab_gen import learner

    monkeypatch.setattr(learner, "MAX_INPUT_TOKENS", 400)
    lines = read_long_lines(os.path.join(TINY_CORPUS, "train.txt"))
    counts = collections.Counter(w.decode() for w in pretokenize_lines(lines, lowercase=True))
    assert len(counts) > 400
    canonical = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))
    expected = reference.learn(canonical, 300, RESERVED, max_input_tokens=400, include_joiner_token=True, joiner="##")
    with test_pipeline.TestPipeline() as p:
        vocab = p | beam.Create(lines) | ComputeVocabulary(300, True, RESERVED)
        assert_that(vocab, equal_to([expected[:300]]))


def test_beam_job_without_words_fails_with_a_message():
    with pytest.raises(Exception, match="zero words: the train split has no text"):
        with test_pipeline.TestPipeline() as p:
            _ = p | beam.Create([b"", b"   "]) | ComputeVocabulary(300, True, RESERVED)


def test_beam_job_on_text_that_is_not_utf8_fails_with_a_message():
    with pytest.raises(Exception, match="not UTF-8"):
        with test_pipeline.TestPipeline() as p:
            _ = p | beam.Create([b"caf\xe9 au lait"]) | ComputeVocabulary(300, True, RESERVED)


@pytest.mark.parametrize("parts", [1, 7, 64])
def test_counts_handed_on_past_the_word_limit_in_any_number_of_parts_give_the_same_vocabulary(monkeypatch, parts):
    """A bundle's words leave in pieces once it holds MAX_WORDS_IN_BUNDLE distinct ones
    (memory on a big shard), each piece as WORD_PARTS dicts (64, the default; 1: every
    word in one; 7: a word's count in one of them only): the same vocabulary."""
    from components.vocab_gen import wordpiece

    monkeypatch.setattr(wordpiece, "MAX_WORDS_IN_BUNDLE", 50)
    monkeypatch.setattr(wordpiece, "WORD_PARTS", parts)
    lines = read_long_lines(os.path.join(TINY_CORPUS, "train.txt"))
    counts = collections.Counter(w.decode() for w in pretokenize_lines(lines, lowercase=True))
    assert {wordpiece.word_part(w) for w in counts} == set(range(parts))
    with test_pipeline.TestPipeline() as p:
        vocab = p | beam.Create(lines) | ComputeVocabulary(300, True, RESERVED)
        assert_that(vocab, equal_to([keras_nlp_vocabulary(lines, 300)]))


def test_a_words_part_is_the_same_in_every_worker_process():
    """Workers are processes, and Python's own `hash` of a str differs between them: a
    word counted by two workers must travel in the same part from both."""
    import subprocess
    import sys

    from components.vocab_gen import wordpiece

    words = ["the", "The", "naïve", "東京", "##", "a" * 60]
    script = "import json, sys; from components.vocab_gen import wordpiece; "
    script += "print(json.dumps([wordpiece.word_part(w) for w in json.loads(sys.argv[1])]))"
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script, json.dumps(words)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(out.stdout) == [wordpiece.word_part(w) for w in words]


def test_the_most_frequent_words_whatever_the_bundles_and_merges(monkeypatch):
    """`_MostFrequentFn` as Beam may run it: inputs split over accumulators at random,
    accumulators merged in any grouping (several levels, single ones), cut early once
    past twice the limit: always the `MAX_INPUT_TOKENS` highest counts, ties alphabetical."""
    import random

    from components.vocab_gen import learner, wordpiece

    monkeypatch.setattr(learner, "MAX_INPUT_TOKENS", 37)
    rng = random.Random(0)
    words = [(f"w{i:03d}", rng.choice([1, 2, 3, 5, 8])) for i in range(300)]  # many ties at the cut
    expected = sorted(words, key=lambda wc: (-wc[1], wc[0]))[:37]
    combine = wordpiece._MostFrequentFn()
    for _ in range(30):
        rng.shuffle(words)
        cuts = sorted(rng.sample(range(1, len(words)), rng.randint(1, 12)))
        parts = [words[i:j] for i, j in zip([0, *cuts], [*cuts, len(words)])]
        accumulators = []
        for part in parts:
            acc = combine.create_accumulator()
            for piece in (part[: len(part) // 2], part[len(part) // 2 :]):
                acc = combine.add_input(acc, list(piece))
            accumulators.append(acc)
        while len(accumulators) > 1:
            split = rng.randint(1, len(accumulators))
            accumulators = [combine.merge_accumulators(iter(accumulators[:split]))] + accumulators[split:]
        result = combine.extract_output(combine.merge_accumulators(iter(accumulators)))
        assert sorted(result, key=lambda wc: (-wc[1], wc[0])) == expected
