"""The run's pictures, logged as PNG artifacts: training curves, the decoder
leaderboard and the corpus's line lengths. Where a person would rather look than read.

Matplotlib's Agg backend draws off-screen, so this runs on any worker; each function
returns a Figure for `PipelineRun.log_figure`.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402

# MLflow metric history: metric name -> [(step, value)].
History = Mapping[str, Sequence[Tuple[int, float]]]
# The leaderboard measures drawn, and whether more is better.
LEADERBOARD_MEASURES = (
    ("distinct_2", "distinct-2 (higher: more varied)"),
    ("repeated_4gram_rate", "repeated 4-grams (lower: less looping)"),
    ("mean_log_likelihood", "mean log-likelihood (higher: more likely)"),
    ("tokens_per_s", "tokens/s"),
)


def training_curves(history: History) -> Figure:
    """Loss and perplexity per epoch, train against val (`train/loss`, `val/loss`, ...)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, measure in zip(axes, ("loss", "perplexity")):
        for split, style in (("train", "o-"), ("val", "s--")):
            points = sorted(history.get(f"{split}/{measure}", ()))
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], style, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(measure)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_yscale("log")
    return fig


def decoder_leaderboard(board: List[Dict[str, float]]) -> Figure:
    """One bar chart per leaderboard measure, a bar per decoder (rows need `decoder`)."""
    fig, axes = plt.subplots(1, len(LEADERBOARD_MEASURES), figsize=(16, 4), constrained_layout=True)
    names = [row["decoder"] for row in board]
    for ax, (measure, title) in zip(axes, LEADERBOARD_MEASURES):
        ax.bar(names, [row[measure] for row in board], color="tab:blue")
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", rotation=45)
        ax.grid(axis="y", alpha=0.3)
    return fig


def line_lengths(histograms: Mapping[str, Mapping[int, int]], bucket_bytes: int, cut: int) -> Figure:
    """Lines per length bucket for each split, with the training filter's cut marked."""
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    width = bucket_bytes / (len(histograms) + 1)
    for i, (split, histogram) in enumerate(sorted(histograms.items())):
        lows = sorted(histogram)
        heights = [histogram[low] for low in lows]
        ax.bar([low + i * width for low in lows], heights, width=width, align="edge", label=split)
    ax.axvline(cut, color="tab:red", linestyle="--", label=f"kept: longer than {cut} bytes")
    ax.set_xlabel(f"line length in bytes ({bucket_bytes}-byte buckets; the last holds all longer lines)")
    ax.set_ylabel("lines")
    ax.legend()
    return fig
