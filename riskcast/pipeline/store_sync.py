"""The store's copies of what the lake and the registry own, each derived in this one place.

- Quarantine: the lake keeps every batch's quarantined rows (riskcast.lake); the store's
  quarantine table is a copy for the dashboard, written from the lake's rows by
  `record_quarantine`, which the ingest flow calls (riskcast.pipeline.ingest.ingest_paths
  with an engine), and deleted after the retention period by `delete_quarantine_before`
  (the housekeeping job). Every caller gets the same rows and columns.
- Models and the champion: the registry (models_dir/registry.json) is the source of truth
  for which versions exist and which one is champion, with who promoted it, when and why;
  the store's models table mirrors it, written only by `sync_models`, which the flows that
  change the registry call (training and registration, promotion). Readers of the store
  (the scores of "the champion") therefore see the registry's champion.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlalchemy import Engine, delete, select, update

from riskcast.lake import Lake
from riskcast.store import write_quarantine, write_transaction
from riskcast.store.tables import models, quarantine

if TYPE_CHECKING:  # the ingest flow imports this module: no model libraries for it
    from riskcast.model import ModelRegistry


def record_quarantine(engine: Engine, lake: Lake, batch_ids: Iterable[str], *, now: datetime) -> int:
    """Copy the lake's quarantined rows of `batch_ids` into the store's quarantine table; the rows
    written. Idempotent per batch: a batch already in the store is left as it is, so copying a
    batch again (an ingest that died between the lake and the store, content sent twice) is safe."""
    wanted = sorted(set(batch_ids))
    if not wanted:
        return 0
    held = lake.scan_quarantine().filter(pl.col("batch_id").is_in(wanted)).collect()
    written = 0
    for (batch_id,), rows in held.group_by("batch_id", maintain_order=True):
        written += write_quarantine(engine, str(batch_id), rows, now=now)
    return written


def delete_quarantine_before(engine: Engine, cutoff: datetime) -> int:
    """Delete the store's copies of quarantined rows stored before `cutoff` (UTC); the number
    deleted. The lake keeps its own rows, so a batch ingested again is copied again."""
    with write_transaction(engine) as connection:
        deleted = connection.execute(delete(quarantine).where(quarantine.c.created_at < cutoff))
    return int(deleted.rowcount or 0)


def _metrics(registry: ModelRegistry, version: str) -> dict[str, Any]:
    """The headline held-out metrics of `version`, from the evaluation its model card holds (the
    source of truth, riskcast.pipeline.reports); empty when it holds none."""
    from riskcast.pipeline.reports import ReportStore  # here: the ingest flow imports this module

    card = ReportStore(registry).model_card(version)
    evaluation = {} if card is None else card.evaluation_metrics
    risk = evaluation.get("discrimination", {}).get("risk")
    return {"auroc": risk["auroc"], "auprc": risk["auprc"]} if risk else {}


def sync_models(registry: ModelRegistry, engine: Engine) -> None:
    """Mirror the registry into the store's models table: every version, its engine, device,
    threshold and held-out AUROC/AUPRC, which one is champion, and who promoted each and why.

    The registry is the source of truth; this is the only writer of the models table.
    """
    champion = registry.champion()
    promotions = {e["version"]: e for e in registry.events() if e["event"] == "promote"}
    with write_transaction(engine) as connection:
        known = set(connection.execute(select(models.c.version)).scalars())
        connection.execute(update(models).values(is_champion=False).where(models.c.is_champion.is_(True)))
        for info in registry.versions():
            config = registry.read_json(info.version, "config.json") or {}
            promoted = promotions.get(info.version)
            values = {
                "engine": info.engine,
                "device": config.get("device", "cpu"),
                "created_at": info.created_at,
                "is_champion": info.version == champion,
                "status": "champion" if info.version == champion else ("retired" if promoted else "challenger"),
                "path": str(info.path),
                "metrics": _metrics(registry, info.version),
                "threshold": float(info.threshold or config.get("threshold", 0.5)),
                "promoted_at": datetime.fromisoformat(promoted["at"]) if promoted else None,
                "promoted_by": promoted.get("by") if promoted else None,
                "promotion_reason": promoted.get("reason") if promoted else None,
            }
            if info.version in known:
                connection.execute(update(models).where(models.c.version == info.version).values(**values))
            else:
                connection.execute(models.insert().values(version=info.version, **values))


__all__ = ["delete_quarantine_before", "record_quarantine", "sync_models"]
