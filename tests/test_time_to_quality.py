"""The time-to-quality benchmark's rule: a recipe's time to a target is its first epoch there."""

from benchmarks.time_to_quality import first_reaching, times_to_targets

# BENCHMARKS.md §3's first run on the embedded corpus: the reference's final value (218.8,
# epoch 6) was already reached at its epoch 4 (218.7), and its best (211.9) at epoch 5.
EMBEDDED = {
    "reference": {
        "val_perplexity": [499.2, 274.2, 244.9, 218.7, 211.9, 218.8],
        "seconds": [47, 88, 131, 211, 252, 293],
    },
    "ours": {"val_perplexity": [448.7, 257.7, 224.8, 216.8, 217.1, 218.4], "seconds": [35, 75, 116, 157, 198, 239]},
}


def test_the_first_epoch_at_or_below_the_target_counts_not_the_last():
    assert first_reaching([300.0, 220.0, 210.0, 220.0], [10, 20, 30, 40], 220.0) == (2, 20)
    assert first_reaching([300.0, 221.0], [10, 20], 220.0) is None
    assert first_reaching([], [], 220.0) is None


def test_the_reference_is_timed_at_its_own_first_epoch_at_each_target():
    targets = times_to_targets(EMBEDDED)
    assert [(kind, t["val_perplexity"]) for kind, t in targets.items()] == [("best", 211.9), ("final", 218.8)]
    final = targets["final"]["recipes"]
    assert final["reference"] == {"epoch": 4, "seconds": 211, "time_ratio": 1.0}
    assert (final["ours"]["epoch"], final["ours"]["seconds"]) == (4, 157)
    assert round(final["ours"]["time_ratio"], 2) == 0.74  # 157 / 211, not 157 / 293 = 0.54
    assert targets["best"]["recipes"] == {"reference": {"epoch": 5, "seconds": 252, "time_ratio": 1.0}, "ours": None}
