"""Copy what the dashboard needs from a flow into the store (quarantine counts, runs)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from riskcast.config import Settings
from riskcast.store import open_store, write_quarantine


def record_quarantine(settings: Settings, batch_id: str, quarantine: pl.DataFrame, *, now: datetime) -> int:
    """Write a batch's quarantined rows to the store's quarantine table (idempotent per batch)."""
    engine = open_store(settings.database_url)
    try:
        return write_quarantine(engine, batch_id, quarantine, now=now)
    finally:
        engine.dispose()
