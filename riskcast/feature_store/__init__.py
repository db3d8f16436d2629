"""The feature store: the point-in-time hourly feature matrix as Parquet shards of encounters.

Built and refreshed by `refresh_store` (riskcast.feature_store.refresh), read through
`FeatureStore.open(...)` (riskcast.feature_store.store); train, evaluate, audit, nightly and
retrain read it instead of rebuilding the whole matrix in memory.
"""

from riskcast.feature_store.refresh import RefreshSummary, refresh_store
from riskcast.feature_store.shards import DEFAULT_ROWS_PER_SHARD, shard_count, shard_map, shard_of
from riskcast.feature_store.store import FeatureStore, Generation

__all__ = [
    "DEFAULT_ROWS_PER_SHARD",
    "FeatureStore",
    "Generation",
    "RefreshSummary",
    "refresh_store",
    "shard_count",
    "shard_map",
    "shard_of",
]
