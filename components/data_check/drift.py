"""The drift of the token-id distribution from the champion's training data (TFDV).

TFDV's Jensen-Shannon comparator on the `ids` feature, between the train split's
statistics and those of the data the champion was trained on, whose ExampleStatistics
URI the Pusher recorded on the champion's MLflow model version
(`components.tracking.champion`). Ids name the same tokens only under the same
vocabulary: with another one the divergence means nothing, and is not measured.
"""

from __future__ import annotations

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils, standard_artifacts

from components.data.formats import IDS_FEATURE

TRAIN_SPLIT = "train"


def load_split_statistics(statistics_uri: str, split: str = TRAIN_SPLIT) -> statistics_pb2.DatasetFeatureStatisticsList:
    """One split's statistics from an ExampleStatistics artifact's URI (StatisticsGen's layout)."""
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = statistics_uri
    artifact.split_names = artifact_utils.encode_split_names([split])
    return stats_artifact_utils.load_statistics(artifact, split).proto()


def token_id_divergence(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    previous: statistics_pb2.DatasetFeatureStatisticsList,
    schema,
) -> float:
    """The Jensen-Shannon divergence of the `ids` feature's values between two statistics.

    TFDV reports the measurement whatever the threshold; the threshold set here only
    decides whether it also raises an anomaly, which the caller judges itself.
    """
    schema = type(schema).FromString(schema.SerializeToString())
    tfdv.get_feature(schema, IDS_FEATURE).drift_comparator.jensen_shannon_divergence.threshold = 1.0
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    return next(
        measurement.value
        for info in anomalies.drift_skew_info
        for measurement in info.drift_measurements
        if measurement.type == measurement.JENSEN_SHANNON_DIVERGENCE
    )
