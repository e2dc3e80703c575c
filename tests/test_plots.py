"""The run's plots: drawn from real inputs, written as PNG, and logged to MLflow."""

import os

import pytest
from matplotlib.image import imread
from mlflow.tracking import MlflowClient

from components.data.formats import LENGTH_BUCKET_BYTES, length_bucket
from components.tracking import plots
from components.tracking.mlflow_runs import PipelineRun


def _png(fig, path):
    fig.savefig(path)
    image = imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 400
    return image


def test_training_curves_draw_train_and_val_per_epoch(tmp_path):
    history = {
        "train/loss": [(1, 6.5), (2, 5.4), (3, 5.0)],
        "val/loss": [(1, 6.1), (2, 5.6), (3, 5.4)],
        "train/perplexity": [(1, 700.0), (2, 240.0), (3, 150.0)],
        "val/perplexity": [(1, 470.0), (2, 260.0), (3, 228.0)],
    }
    fig = plots.training_curves(history)
    loss, perplexity = fig.axes
    assert [line.get_label() for line in loss.lines] == ["train", "val"]
    assert list(perplexity.lines[1].get_ydata()) == [470.0, 260.0, 228.0]
    assert list(perplexity.lines[1].get_xdata()) == [1, 2, 3]
    _png(fig, tmp_path / "curves.png")


def test_leaderboard_has_a_bar_per_decoder_for_every_measure(tmp_path):
    board = [
        {"decoder": name, "distinct_2": d2, "repeated_4gram_rate": r, "mean_log_likelihood": ll, "tokens_per_s": t}
        for name, d2, r, ll, t in (("greedy", 0.08, 0.6, -2.2, 4800), ("top_k", 0.58, 0.0, -3.0, 5300))
    ]
    fig = plots.decoder_leaderboard(board)
    assert len(fig.axes) == len(plots.LEADERBOARD_MEASURES)
    assert [bar.get_height() for bar in fig.axes[1].patches] == [0.6, 0.0]
    _png(fig, tmp_path / "board.png")


@pytest.mark.parametrize("num_bytes, bucket", [(0, 0), (49, 0), (450, 450), (451, 450), (1999, 1950), (10**6, 2000)])
def test_length_buckets(num_bytes, bucket):
    assert length_bucket(num_bytes) == bucket


def test_line_lengths_mark_the_cut_and_log_as_png(tmp_path):
    histograms = {"train": {0: 30, 400: 2, 450: 100, 2000: 5}, "eval": {450: 20}}
    fig = plots.line_lengths(histograms, LENGTH_BUCKET_BYTES, 450)
    (ax,) = fig.axes
    assert sorted(bar.get_height() for bar in ax.patches) == [2, 5, 20, 30, 100]
    assert list(ax.lines[0].get_xdata()) == [450, 450]  # the cut
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = PipelineRun.for_pipeline_run(client.tracking_uri, "exp", "p", "run-1")
    run.log_figure(fig, "plots/line_lengths.png")
    local = client.download_artifacts(run.run_id, "plots/line_lengths.png", str(tmp_path))
    assert os.path.getsize(local) > 10_000 and imread(local).shape[1] > 400
