"""Shards of encounters: a stable hash of `encounter_id` decides which shard holds a stay.

The hash is blake2b of the id's UTF-8 bytes, so the same encounter lands in the same shard on
every machine, Python and polars version (polars' own `hash` promises no such thing). A
whole stay is always in one shard, so every point-in-time window over a stay is computed
within its shard, exactly as over the whole cohort.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import numpy as np
import polars as pl

from riskcast.errors import FeatureError

DEFAULT_ROWS_PER_SHARD = 100_000
"""Hourly rows a shard aims at: its build holds about 1 GiB at this size (see bench/scale.py)."""
MAX_SHARDS = 4096


def shard_of(encounter_id: str, n_shards: int) -> int:
    """The shard (0 .. n_shards - 1) of one encounter."""
    digest = hashlib.blake2b(encounter_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards


def shard_map(encounter_ids: Iterable[str], n_shards: int) -> pl.DataFrame:
    """encounter_id, shard (UInt16) for each distinct id."""
    if not 1 <= n_shards <= MAX_SHARDS:
        raise FeatureError(f"the number of shards must be between 1 and {MAX_SHARDS}, got {n_shards}")
    ids = sorted(set(encounter_ids))
    shards = np.fromiter((shard_of(i, n_shards) for i in ids), dtype=np.uint16, count=len(ids))
    return pl.DataFrame({"encounter_id": pl.Series(ids, dtype=pl.String), "shard": pl.Series(shards, dtype=pl.UInt16)})


def shard_count(hourly_rows: int, *, rows_per_shard: int = DEFAULT_ROWS_PER_SHARD) -> int:
    """How many shards a cohort of about `hourly_rows` encounter-hours needs."""
    if rows_per_shard < 1:
        raise FeatureError(f"rows per shard must be positive, got {rows_per_shard}")
    return int(min(MAX_SHARDS, max(1, math.ceil(hourly_rows / rows_per_shard))))
