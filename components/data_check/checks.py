"""The checks DataCheck runs, as values against thresholds: pure functions of counts.

Each check yields a `Check` (name, value, threshold, passed) that goes into the
component's JSON summary and, when it fails, into the one line that stops the run.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping

from components.data_check.config import DataChecksConfig


@dataclasses.dataclass(frozen=True)
class Check:
    """One measured value against its threshold.

    `name` is `<split>.<what>` (e.g. `eval.leaked_share`); `setting` the config key of
    the threshold; `detail` what the value is, for the one-line message.
    """

    name: str
    value: float
    threshold: float
    passed: bool
    setting: str
    detail: str

    def message(self) -> str:
        """The one line that names the check, the value and the threshold."""
        bound = "below the minimum" if self.setting.split(".")[-1].startswith("min_") else "above the maximum"
        return (
            f"data check {self.name} failed: {self.detail} is {self.value:.4g}, {bound} {self.threshold:.4g} "
            f"({self.setting}); fix the data, or change the setting if the data is right"
        )

    def to_dict(self) -> Dict[str, object]:
        return {"name": self.name, "value": self.value, "threshold": self.threshold, "passed": self.passed}


def _at_least(name: str, value: float, threshold: float, setting: str, detail: str) -> Check:
    return Check(name, value, threshold, value >= threshold, f"data.checks.{setting}", detail)


def _at_most(name: str, value: float, threshold: float, setting: str, detail: str) -> Check:
    return Check(name, value, threshold, value <= threshold, f"data.checks.{setting}", detail)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def split_checks(split: str, counts: Mapping[str, int], seq_len: int, thresholds: DataChecksConfig) -> List[Check]:
    """The checks of one split's line and token counts (TextExampleGen's and Tokenize's
    `<counter>` custom properties, without the `<split>_` prefix)."""
    sequences = counts.get("sequences", 0)
    return [
        _at_least(
            f"{split}.kept_share",
            _share(counts.get("lines_kept", 0), counts.get("lines_read", 0)),
            thresholds.min_kept_share,
            "min_kept_share",
            f"the share of the {split} split's lines that pass the length filter",
        ),
        _at_most(
            f"{split}.unk_share",
            _share(counts.get("unk_tokens", 0), counts.get("tokens", 0)),
            thresholds.max_unk_share,
            "max_unk_share",
            f"the share of the {split} split's tokens that are [UNK]",
        ),
        _at_least(
            f"{split}.mean_tokens",
            _share(counts.get("tokens", 0), sequences),
            thresholds.min_mean_tokens_share * seq_len,
            "min_mean_tokens_share",
            f"the mean tokens per {split} sequence (the threshold is that share of model.seq_len {seq_len})",
        ),
    ]


def paragraph_checks(
    sequences: Mapping[str, int],
    duplicates: Mapping[str, int],
    leaked: Mapping[str, int],
    thresholds: DataChecksConfig,
) -> List[Check]:
    """Duplicates within the train split and paragraphs the other splits share with it.

    Args:
      sequences: paragraphs per split (Tokenize's `<split>_sequences`).
      duplicates: copies beyond the first of a paragraph, per split.
      leaked: per split other than train, its paragraphs that the train split holds too.
      thresholds: the config's `data.checks`.
    """
    checks = [
        _at_most(
            "train.duplicate_share",
            _share(duplicates.get("train", 0), sequences.get("train", 0)),
            thresholds.max_duplicate_share,
            "max_duplicate_share",
            "the share of the train split's paragraphs that are exact copies of another (data.dedup: exact drops them)",
        )
    ]
    for split in sorted(s for s in sequences if s != "train"):
        checks.append(
            _at_most(
                f"{split}.leaked_share",
                _share(leaked.get(split, 0), sequences[split]),
                thresholds.max_leaked_share,
                "max_leaked_share",
                f"the share of the {split} split's paragraphs that are also in the train split",
            )
        )
    return checks


def drift_check(divergence: float, thresholds: DataChecksConfig) -> Check:
    """The train split's token-id distribution against the champion's training data."""
    return _at_most(
        "train.drift",
        divergence,
        thresholds.max_drift,
        "max_drift",
        "the Jensen-Shannon divergence of the train split's token ids from the champion's training data",
    )


def schema_check(split: str, anomalies: Mapping[str, str]) -> Check:
    """ExampleValidator's anomalies of one split (feature path -> short description)."""
    first = next(iter(sorted(anomalies.items())), None)
    where = f" (first: {first[0]}: {first[1]})" if first else ""
    return Check(
        f"{split}.schema_anomalies",
        float(len(anomalies)),
        0.0,
        not anomalies,
        "data.schema_file",
        f"the number of features of the {split} split's statistics that break the schema{where}",
    )
