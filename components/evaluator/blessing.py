"""Whether a new model replaces the champion: TFX's ModelBlessing, decided on perplexity.

The champion is the model MLflow's `champion` alias names (`components.tracking.champion`:
the one source of truth, moved by the Pusher). Both models are scored here, on this
run's held-out split, so data that changed since the champion was trained is no excuse
for either; a champion whose vocabulary differs cannot be compared token for token (a
token is another unit), so it blocks the blessing with that reason rather than a number,
as does a candidate that already is the champion (nothing to push again).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

from tfx import types
from tfx.components.evaluator import constants

from components.tracking.champion import NO_CHAMPION, VERSION_PROPERTY
from components.tracking.text_model import REGISTERED_MODEL

# The custom properties this project adds to TFX's (blessed, current/baseline model).
CANDIDATE_PERPLEXITY = "candidate_perplexity"
CHAMPION_PERPLEXITY = "champion_perplexity"
SPLIT = "split"
# The MLflow model version registered for the candidate (what the Pusher promotes).
REGISTERED_VERSION = "registered_version"
# The statistics of the data it was trained on (a later run's drift baseline).
STATISTICS_URI = "statistics_uri"
# On the MLflow run: "blessed" or "not blessed", and why.
TAG = "blessing"
REASON_TAG = "blessing.reason"


@dataclasses.dataclass(frozen=True)
class Decision:
    blessed: bool
    split: str
    candidate: float
    # None when there is no champion, or when it could not be scored on this split.
    champion: Optional[float]
    # The champion's registered version; None: there is none yet.
    champion_version: Optional[str]
    max_increase: float
    # Why, in words (for the summary, the report and MLflow).
    reason: str


def decide(
    split: str,
    candidate: float,
    champion: Optional[float],
    max_increase: float,
    champion_version: Optional[str],
    incomparable: Optional[str] = None,
) -> Decision:
    """Blessed when there is no champion (`champion_version` None), or when `candidate` <=
    `champion` x (1 + max_increase). `incomparable` says why the champion could not be
    scored here (it then blocks)."""
    if champion_version is None:
        return Decision(True, split, candidate, None, None, max_increase, "no champion yet")
    if incomparable:
        return Decision(False, split, candidate, None, champion_version, max_increase, incomparable)
    bound = champion * (1 + max_increase)
    blessed = candidate <= bound
    relation = "<=" if blessed else ">"
    allowance = f" x (1 + {max_increase:g})" if max_increase else ""
    reason = (
        f"{split} perplexity {candidate:.2f} {relation} the champion's (version {champion_version}) "
        f"{champion:.2f}{allowance}"
    )
    return Decision(blessed, split, candidate, champion, champion_version, max_increase, reason)


def metrics(decision: Decision) -> Dict[str, float]:
    """The decision's numbers as MLflow metrics: candidate vs champion (when scored)."""
    values = {"blessing.candidate_perplexity": decision.candidate, "blessing.blessed": float(decision.blessed)}
    if decision.champion is not None:
        values["blessing.champion_perplexity"] = decision.champion
    return values


def record(
    blessing: types.Artifact,
    decision: Decision,
    model: types.Artifact,
    registered_version: str,
    statistics: Optional[types.Artifact] = None,
) -> None:
    """Writes the decision on the ModelBlessing artifact the way TFX's Evaluator does
    (`blessed`, `current_model[_id]`, `baseline_model`, `blessing_message`): what the
    Pusher reads, plus the numbers, the registered MLflow version, and where the
    statistics of its training data are."""
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, int(decision.blessed))
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    if decision.champion_version:
        champion = f"models:/{REGISTERED_MODEL}/{decision.champion_version}"
        blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, champion)
    blessing.set_float_custom_property(CANDIDATE_PERPLEXITY, decision.candidate)
    if decision.champion is not None:
        blessing.set_float_custom_property(CHAMPION_PERPLEXITY, decision.champion)
    blessing.set_string_custom_property(SPLIT, decision.split)
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY, decision.reason)
    blessing.set_string_custom_property(REGISTERED_VERSION, registered_version)
    # What the Pusher checks is still the champion before it promotes this model.
    blessing.set_string_custom_property(VERSION_PROPERTY, decision.champion_version or NO_CHAMPION)
    if statistics is not None:
        blessing.set_string_custom_property(STATISTICS_URI, statistics.uri)
