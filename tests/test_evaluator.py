"""The Evaluator executor on a tiny exported model: results, MLflow logging, cached-Trainer reruns."""

import json
import os

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from tfx.dsl.components.base.base_executor import BaseExecutor
from tfx.dsl.io import fileio
from tfx.proto.orchestration import pipeline_pb2
from tfx.types import Channel, standard_artifacts

from components.data.formats import EVALUATION_FILE
from components.evaluator import executor
from components.evaluator.component import Evaluator
from components.minigpt.leaderboard import MEASURES
from components.minigpt.model import GPTConfig, build_model
from components.runtime.errors import ConfigError, InputDataError
from components.runtime.paths import copy_tree
from components.serving import model_bundle
from components.tracking.mlflow_runs import PIPELINE_RUN_ID_TAG, TRAINED_IN_RUN_TAG, PipelineRun
from tests.conftest import register_champion, tokenize, write_token_examples
from tests.ram_filesystem import ram_folder

VOCAB = ["[PAD]", "[UNK]", "[BOS]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "."]
TRAINING_PARAMS = {"train.epochs": 2, "model.seq_len": 8, "model.vocabulary_size_learned": len(VOCAB)}
SPLITS = ["train", "eval", "test"]
EVAL_CONFIG = {
    "num_tokens_to_generate": 4,
    "samples_per_decoder": 2,
    "prompt_tokens": 2,
    "serving_decoder": None,
    "batch_size": 4,
    "max_batches": None,
    "seed": 42,
    "decoders": {"greedy": {}, "top_k": {"k": 3}},
}


@pytest.fixture
def setup(tmp_path):
    """A trained-model bundle whose MLflow run is still RUNNING, and an eval split."""
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    training_run = PipelineRun.for_pipeline_run(tracking_uri, "exp", "p", "train-run")
    gpt = GPTConfig(vocabulary_size=len(VOCAB), seq_len=8, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1)
    model_uri = tmp_path / "Trainer" / "model"
    vocab_path = tmp_path / "vocab.txt"
    vocab_path.write_text("\n".join(VOCAB) + "\n")
    manifest = model_bundle.Manifest(gpt, True, training_run.run_id, "train-run", TRAINING_PARAMS)
    # Uniform logits: the perplexity must come out as the vocabulary size, exactly.
    model = build_model(gpt)
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([np.zeros_like(kernel), np.zeros_like(bias)])
    model_bundle.export(str(model_uri / "Format-Serving"), model, manifest, str(vocab_path))
    lines = [b"the cat sat on the mat .", b"a dog ran .", b"the dog sat on a cat ."] * 3
    write_token_examples(tmp_path / "examples" / "Split-eval" / "data.gz", tokenize(lines, VOCAB, gpt.seq_len))
    write_token_examples(tmp_path / "examples" / "Split-test" / "data.gz", tokenize(TEST_LINES, VOCAB, gpt.seq_len))
    return tmp_path, tracking_uri, training_run


# Held out: the leaderboard's prompts come from these lines.
TEST_LINES = [b"mat ran on the dog .", b"cat ran ."]
# The candidate Model artifact's ML Metadata id.
CANDIDATE_ID = 7


def _champion(tmp_path, tracking_uri, vocab=VOCAB, bias_to=None):
    """Makes MLflow's champion a model with uniform logits (perplexity = vocabulary size),
    or, with `bias_to` (token -> logit bias), one that favours those tokens."""
    gpt = GPTConfig(vocabulary_size=len(vocab), seq_len=8, embed_dim=8, ff_dim=8, num_heads=2, num_layers=1)
    model = build_model(gpt)
    kernel, bias = model.get_layer("logits").get_weights()
    bias = np.zeros_like(bias)
    for token, value in (bias_to or {}).items():
        bias[vocab.index(token)] = value
    model.get_layer("logits").set_weights([np.zeros_like(kernel), bias])
    return register_champion(tracking_uri, str(tmp_path / "champion"), vocab, model=model, gpt=gpt)


def _evaluate(
    tmp_path,
    tracking_uri,
    pipeline_run_id,
    eval_config=EVAL_CONFIG,
    params=None,
    splits=SPLITS,
    root=None,
    blessing=None,
):
    """Runs the executor on the artifacts under `root` (a local folder or a URI; default
    `tmp_path`)."""
    root = str(root or tmp_path)
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(root, "examples")
    examples.split_names = json.dumps(splits)
    model = standard_artifacts.Model()
    model.uri = os.path.join(root, "Trainer", "model")
    model.id = CANDIDATE_ID
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = os.path.join(root, "evaluation", pipeline_run_id)
    fileio.makedirs(evaluation.uri)
    blessing = blessing or standard_artifacts.ModelBlessing()
    blessing.uri = os.path.join(root, "blessing", pipeline_run_id)
    fileio.makedirs(blessing.uri)
    eval_config = {"blessing": {"max_increase": 0.0}, **eval_config}
    component = Evaluator(
        examples=Channel(type=standard_artifacts.Examples),
        model=Channel(type=standard_artifacts.Model),
        eval_config=eval_config,
        mlflow_config={"tracking_uri": tracking_uri, "experiment_name": "exp"},
        params=params or {f"eval.{k}": v for k, v in eval_config.items() if k != "decoders"},
    )
    context = BaseExecutor.Context(
        tmp_dir=str(tmp_path / "tmp"), pipeline_info=pipeline_pb2.PipelineInfo(id="p"), pipeline_run_id=pipeline_run_id
    )
    inputs = {"examples": [examples], "model": [model]}
    outputs = {"evaluation": [evaluation], "blessing": [blessing]}
    executor.Executor(context).Do(inputs, outputs, component.exec_properties)
    with fileio.open(os.path.join(evaluation.uri, EVALUATION_FILE)) as f:
        return evaluation, json.load(f)


def _table(client, run_id, name, tmp_path):
    with open(client.download_artifacts(run_id, name, str(tmp_path))) as f:
        return json.load(f)


def test_scores_both_splits_samples_and_finishes_the_training_run(setup):
    tmp_path, tracking_uri, training_run = setup
    evaluation, result = _evaluate(tmp_path, tracking_uri, "train-run")
    # Every non-[PAD] label: 3 x (7 + 4 + 7) in the eval split, 6 + 3 in the test split.
    tokens = {"eval": 3 * (7 + 4 + 7), "test": 6 + 3}
    client = MlflowClient(tracking_uri)
    run = client.get_run(training_run.run_id)
    for split in ("eval", "test"):
        assert result["perplexity"][split] == dict(perplexity=pytest.approx(len(VOCAB), rel=1e-4), tokens=tokens[split])
        assert run.data.metrics[f"{split}.perplexity"] == pytest.approx(result["perplexity"][split]["perplexity"])
        assert run.data.metrics[f"{split}.tokens"] == tokens[split]
        assert evaluation.get_float_custom_property(f"{split}_perplexity") == pytest.approx(len(VOCAB), rel=1e-4)
    assert result["prompt_split"] == "test"
    assert sorted(result["samples"]) == ["greedy", "top_k"]
    assert all(text.startswith("[BOS]") for text in result["samples"].values())
    assert result["mlflow_run_id"] == result["trained_in_mlflow_run"] == training_run.run_id
    assert run.info.status == "FINISHED"
    # The leaderboard: every measure of every decoder as a metric, and as a table row.
    for name in ("greedy", "top_k"):
        for measure in MEASURES:
            assert f"decoder.{name}.{measure}" in run.data.metrics
    assert [row["decoder"] for row in result["leaderboard"]] == ["greedy", "top_k"]
    assert [f.path for f in client.list_artifacts(run.info.run_id, "samples")] == [
        "samples/greedy.txt",
        "samples/top_k.txt",
    ]
    board = _table(client, run.info.run_id, "decoder_leaderboard.json", tmp_path)
    assert board["columns"] == ["decoder", *MEASURES] and len(board["data"]) == 2
    samples = _table(client, run.info.run_id, "decoder_samples.json", tmp_path)
    assert samples["columns"] == ["decoder", "prompt", "text", "tokens_per_s"]
    # Greedy is deterministic: one sample from [BOS] (its copies would be the same text);
    # top-k samples [BOS] twice. Then 2 prompts from the held-out test split each.
    prompts = [(row[0], row[1]) for row in samples["data"]]
    test_prompts = ["[BOS] cat ran", "[BOS] mat ran"]
    assert prompts == [("greedy", p) for p in ["[BOS]", *test_prompts]] + [
        ("top_k", p) for p in ["[BOS]", "[BOS]", *test_prompts]
    ]
    assert all(row[2].startswith(row[1]) for row in samples["data"])
    # The registered text model: prompts in, text out, through MLflow's own loader.
    mlflow.set_tracking_uri(tracking_uri)
    (version,) = client.search_model_versions("name = 'minigpt'")
    assert result["registered_model"] == f"models:/minigpt/{version.version}" and version.run_id == run.info.run_id
    # It ships the whole package as code (the class and what it imports), so it loads
    # where this project is not installed.
    code = os.path.join(mlflow.artifacts.download_artifacts("models:/minigpt/latest", dst_path=str(tmp_path)), "code")
    for module in ("tracking/text_model.py", "minigpt/cached_decoding.py", "serving/model_bundle.py"):
        assert os.path.isfile(os.path.join(code, "components", module)), module
    text_model = mlflow.pyfunc.load_model("models:/minigpt/latest")
    greedy, top_k = (text_model.predict(["the cat", "a dog ran"], params={"decoder": d}) for d in ("greedy", "top_k"))
    # A prompt keeps its last num_tokens_to_generate // 2 tokens (2 here): room to generate.
    assert [text.split()[:2] for text in greedy] == [["the", "cat"], ["dog", "ran"]]
    assert top_k[1].startswith("dog ran")  # (this uniform model's greedy choice is [PAD]: the end)


def test_a_rerun_on_a_cached_model_links_and_copies_only_training_params(setup):
    tmp_path, tracking_uri, training_run = setup
    _evaluate(tmp_path, tracking_uri, "train-run")  # the first run logs eval.seed=42
    changed = {**EVAL_CONFIG, "seed": 7, "decoders": {"top_k": {"k": 5}}}
    params = {"eval.seed": 7, "eval.decoders.top_k": {"k": 5}}
    _, result = _evaluate(tmp_path, tracking_uri, "eval-rerun", changed, params)
    client = MlflowClient(tracking_uri)
    rerun = client.get_run(result["mlflow_run_id"])
    assert rerun.info.run_id != training_run.run_id
    assert rerun.info.status == "FINISHED"
    assert rerun.data.tags[PIPELINE_RUN_ID_TAG] == "eval-rerun"
    assert rerun.data.tags[TRAINED_IN_RUN_TAG] == training_run.run_id
    assert rerun.data.params == {
        **{k: str(v) for k, v in TRAINING_PARAMS.items()},
        "eval.seed": "7",
        "eval.decoders.top_k": "{'k': 5}",
    }
    assert client.get_run(training_run.run_id).data.params["eval.seed"] == "42"


def test_a_decoder_that_the_vocabulary_cannot_hold_fails_the_run(setup):
    tmp_path, tracking_uri, training_run = setup
    too_wide = {**EVAL_CONFIG, "decoders": {"beam": {"num_beams": len(VOCAB) + 1}}}
    with pytest.raises(ConfigError, match=r"eval.decoders.beam.num_beams: 13 exceeds the learned vocabulary \(12"):
        _evaluate(tmp_path, tracking_uri, "train-run", too_wide)
    assert MlflowClient(tracking_uri).get_run(training_run.run_id).info.status == "FAILED"


def test_an_empty_eval_split_fails_the_run_with_one_clear_error(setup):
    tmp_path, tracking_uri, training_run = setup
    write_token_examples(tmp_path / "examples" / "Split-eval" / "data.gz", [])
    with pytest.raises(InputDataError, match="The eval split .* holds no examples"):
        _evaluate(tmp_path, tracking_uri, "train-run")
    assert MlflowClient(tracking_uri).get_run(training_run.run_id).info.status == "FAILED"


def test_without_a_test_split_the_eval_split_is_the_only_perplexity(setup):
    tmp_path, tracking_uri, training_run = setup
    evaluation, result = _evaluate(tmp_path, tracking_uri, "train-run", splits=["train", "eval"])
    assert list(result["perplexity"]) == ["eval"] and result["prompt_split"] == "eval"
    metrics = MlflowClient(tracking_uri).get_run(training_run.run_id).data.metrics
    assert "eval.perplexity" in metrics and "test.perplexity" not in metrics


def test_max_batches_scores_rows_spread_over_the_split_not_its_first_ones(setup):
    """The rows are sorted by their ids; `max_batches` takes evenly spaced ones."""
    tmp_path, tracking_uri, _ = setup
    lines = [b"a dog ran ."] * 6 + [b"the cat sat on the mat ."] * 6  # sorted by ids: the 6 "the" rows first
    write_token_examples(tmp_path / "examples" / "Split-eval" / "data.gz", tokenize(lines, VOCAB, 8))
    _, result = _evaluate(tmp_path, tracking_uri, "train-run", {**EVAL_CONFIG, "batch_size": 2, "max_batches": 1})
    # One batch of 2 rows, one of each kind (4 + 7 labels), not the first 2 (7 + 7).
    assert result["perplexity"]["eval"]["tokens"] == 4 + 7


def test_artifacts_at_uris_not_on_this_disk_are_read_and_logged(setup):
    """Under a gs:// pipeline root every artifact is a URI (here on TensorFlow's in-memory
    filesystem): the model bundle is loaded from there and logged with the text model."""
    tmp_path, tracking_uri, training_run = setup
    with ram_folder(tmp_path.name) as root:
        for folder in ("examples", "Trainer"):
            copy_tree(str(tmp_path / folder), f"{root}/{folder}")
        _, result = _evaluate(tmp_path, tracking_uri, "train-run", root=root)
        assert result["perplexity"]["eval"]["perplexity"] == pytest.approx(len(VOCAB), rel=1e-4)
    client = MlflowClient(tracking_uri)
    assert client.get_run(training_run.run_id).info.status == "FINISHED"
    mlflow.set_tracking_uri(tracking_uri)
    text_model = mlflow.pyfunc.load_model(result["registered_model"])
    assert text_model.predict(["the cat"], params={"decoder": "greedy"})[0].split()[:2] == ["the", "cat"]


# A champion that knows the held-out lines' most common tokens: better than uniform.
FREQUENT = {"ran": 2.0, ".": 2.0, "the": 1.0, "cat": 1.0, "[PAD]": 1.0}


def _blessing_of(setup, pipeline_run_id="train-run", **kwargs):
    tmp_path, tracking_uri, _ = setup
    blessing = standard_artifacts.ModelBlessing()
    _, result = _evaluate(tmp_path, tracking_uri, pipeline_run_id, blessing=blessing, **kwargs)
    run = MlflowClient(tracking_uri).get_run(result["mlflow_run_id"])
    return blessing, result["blessing"], run


def test_a_first_model_is_blessed_there_being_no_champion(setup):
    blessing, decision, run = _blessing_of(setup)
    assert decision["blessed"] and decision["champion"] is None and decision["reason"] == "no champion yet"
    assert decision["split"] == "test" and decision["candidate"] == pytest.approx(len(VOCAB), rel=1e-4)
    # TFX's properties, which its Pusher reads.
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property("current_model_id") == CANDIDATE_ID
    assert blessing.get_string_custom_property("registered_version") == decision["registered_version"] == "1"
    assert run.data.tags["blessing"] == "blessed" and run.data.metrics["blessing.blessed"] == 1


def test_a_model_worse_than_the_champion_is_registered_but_not_blessed(setup):
    tmp_path, tracking_uri, _ = setup
    version = _champion(tmp_path, tracking_uri, bias_to=FREQUENT)
    blessing, decision, run = _blessing_of(setup)
    # The champion was scored here, on this run's test split: better than uniform.
    champion = decision["champion"]
    assert champion < len(VOCAB) and run.data.metrics["blessing.champion_perplexity"] == pytest.approx(champion)
    assert not decision["blessed"] and blessing.get_int_custom_property("blessed") == 0
    assert decision["reason"] == f"test perplexity {len(VOCAB):.2f} > the champion's (version {version}) {champion:.2f}"
    assert blessing.get_string_custom_property("baseline_model") == f"models:/minigpt/{version}"
    assert run.data.tags["blessing"] == "not blessed" and run.data.tags["blessing.reason"] == decision["reason"]
    # Registered all the same: a version for the record, which the alias does not name.
    assert decision["registered_version"] == str(int(version) + 1) and run.info.status == "FINISHED"


def test_a_model_no_worse_than_the_champion_or_within_the_allowance_is_blessed(setup):
    tmp_path, tracking_uri, _ = setup
    _champion(tmp_path / "uniform", tracking_uri)  # also uniform: equal
    _, decision, _ = _blessing_of(setup)
    assert decision["blessed"] and decision["champion"] == pytest.approx(decision["candidate"])
    _champion(tmp_path / "better", tracking_uri, bias_to=FREQUENT)
    allowance = {**EVAL_CONFIG, "blessing": {"max_increase": 0.5}}
    _, decision, _ = _blessing_of(setup, "rerun", eval_config=allowance)
    assert decision["champion"] < decision["candidate"] <= decision["champion"] * 1.5
    assert decision["blessed"] and decision["reason"].endswith("x (1 + 0.5)")


def test_a_champion_with_another_vocabulary_blocks_the_blessing_with_the_reason(setup):
    tmp_path, tracking_uri, _ = setup
    _champion(tmp_path, tracking_uri, vocab=[*VOCAB[:-1], "!"])
    _, decision, _ = _blessing_of(setup)
    assert not decision["blessed"] and decision["champion"] is None
    assert "vocabulary differs" in decision["reason"]
