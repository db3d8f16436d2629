"""A file of new observations for the live demo: a few admitted patients deteriorate.

`riskcast demo` runs the scheduler beside the dashboard on the demo's shifted clock.
`write_demo_feed` drops one canonical observations file into the inbox: six sets of
vitals over the last three hours, worsening, for a few admitted patients who are not flagged now,
the last charted a minute before the present's clock hour (scores describe whole clock
hours: observations charted in an hour count at that hour's score). The scheduler ingests
the file, rescoring the hour revises those patients' scores, and alerts follow.

The file is written beside the inbox under a hidden name and then renamed into it, so the
ingest job never sees half a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from riskcast.catalog import load_catalog
from riskcast.config import Settings
from riskcast.errors import LakeError
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.scoring import admitted_encounters
from riskcast.score_status import ScoreStatus
from riskcast.store import open_store
from riskcast.store.records import latest_scores

INBOX = "inbox"
CHARTED_BEFORE_HOUR = tuple(timedelta(minutes=m) for m in (175, 140, 105, 70, 35, 1))
"""The feed charts one set of vitals at each of these times before the present's clock hour."""
DETERIORATING_VITALS: dict[str, tuple[tuple[str, ...], str]] = {
    # variable: (one value per set, unit), as a ward's feed would send them: over three hours
    # the patient becomes tachycardic, tachypnoeic, hypotensive, febrile, hypoxic on rising
    # oxygen and newly confused (NEWS2 well above 7 by the last set), with a raised lactate.
    "heart_rate": (("98", "106", "113", "120", "126", "132"), "/min"),
    "resp_rate": (("21", "23", "25", "27", "29", "31"), "/min"),
    "sbp": (("112", "105", "99", "94", "89", "85"), "mm[Hg]"),
    "temperature": (("37.9", "38.2", "38.5", "38.8", "39.0", "39.2"), "Cel"),
    "spo2": (("95", "93", "92", "90", "89", "87"), "%"),
    "o2_flow": (("0", "2", "2", "4", "4", "6"), "L/min"),
    "avpu": (("A", "A", "A", "C", "C", "C"), "{score}"),
    "lactate": (("", "", "", "", "", "4.6"), "mmol/L"),
}


@dataclass(frozen=True)
class DemoFeed:
    """What was written: the file, the hour it feeds, and whose observations it holds."""

    path: Path
    hour: datetime
    charttime: datetime
    encounters: list[dict[str, Any]]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "hour": self.hour.isoformat(),
            "charttime": self.charttime.isoformat(),
            "encounters": self.encounters,
            "rows": self.rows,
        }

    def text(self) -> str:
        lines = [
            f"wrote {self.rows} observations for {len(self.encounters)} patient(s), charted at "
            f"{self.charttime.isoformat(timespec='minutes')} (they count at the {self.hour:%H:%M} UTC score), to",
            f"  {self.path}",
        ]
        lines += [f"  {e['ward']:<10} {e['encounter_id']}  risk now {_risk_text(e['risk'])}" for e in self.encounters]
        lines.append("with `riskcast demo` running, the ward board shows them within a minute")
        return "\n".join(lines)


def _risk_text(risk: float | None) -> str:
    return "n/a" if risk is None else f"{risk:.0%}"


def _candidates(settings: Settings, lake: Lake, *, hour: datetime, charttime: datetime) -> pl.DataFrame:
    """Admitted encounters whose newest essential vital is older than `charttime` (so the
    feed's values are the hour's last), with their latest score at or before the hour."""
    admitted = admitted_encounters(lake.scan("encounters"), at=hour)
    if admitted.height == 0:
        raise LakeError(f"nobody is admitted at {hour.isoformat()} in the lake at {lake.root}: nothing to feed")
    ids = admitted["encounter_id"].implode()
    newest = (
        lake.scan("observations")
        .filter(
            pl.col("encounter_id").is_in(ids)
            & pl.col("variable").is_in(list(load_catalog().essential))
            & (pl.col("charttime") <= hour)
        )
        .group_by("encounter_id")
        .agg(pl.col("charttime").max().alias("newest"))
        .collect()
    )
    engine = open_store(settings.database_url)
    try:
        scored = latest_scores(engine, at=hour).select("encounter_id", "risk", "status")
    finally:
        engine.dispose()
    return (
        admitted.join(newest, on="encounter_id", how="left")
        .join(scored, on="encounter_id", how="left")
        .filter(pl.col("newest").is_null() | (pl.col("newest") < charttime))
        .sort("encounter_id")
    )


def _champion_threshold(settings: Settings) -> float | None:
    registry = ModelRegistry(settings.models_dir)
    champion = registry.champion()
    return next((v.threshold for v in registry.versions() if v.version == champion), None)


def write_demo_feed(
    settings: Settings, *, at: datetime, patients: int = 3, ward: str | None = None, seed: int = 0
) -> DemoFeed:
    """Write observations showing `patients` admitted patients (on `ward`, when given)
    deteriorating, for the clock hour of `at`, into `<home>/inbox`; returns what was written.

    Patients are chosen (by `seed`) among those scored below the champion's threshold, with
    the lowest risks, so that the change shows; when too few are, any admitted patient will do.
    """
    if patients < 1:
        raise ValueError(f"patients must be at least 1, got {patients}")
    lake = Lake(settings.lake_dir)
    if lake.is_empty():
        raise LakeError(f"the lake at {lake.root} is empty: run `riskcast demo` first")
    if at.tzinfo is None:
        raise ValueError(f"at must be timezone-aware, got {at.isoformat()}")
    hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    times = [hour - before for before in CHARTED_BEFORE_HOUR]
    charttime = times[-1]
    candidates = _candidates(settings, lake, hour=hour, charttime=charttime)
    if ward is not None:
        wards = sorted(candidates["ward"].drop_nulls().unique())
        candidates = candidates.filter(pl.col("ward") == ward)
        if candidates.height == 0:
            raise LakeError(f"no patient on ward {ward!r} can be fed for {hour.isoformat()}; wards that can: "
                            f"{', '.join(wards) or 'none'}")
    if candidates.height == 0:
        raise LakeError(f"every patient admitted at {hour.isoformat()} already has vitals charted after "
                        f"{charttime.isoformat()}: nothing to feed for this hour")
    scored = candidates.filter(pl.col("status") == ScoreStatus.SCORED).sort("risk", "encounter_id")
    threshold = _champion_threshold(settings)
    if threshold is not None and scored.filter(pl.col("risk") < threshold).height >= patients:
        scored = scored.filter(pl.col("risk") < threshold)  # not flagged now: the change shows
    pool = scored.head(max(patients, scored.height // 2)) if scored.height >= patients else candidates
    rng = np.random.default_rng(seed)
    chosen = pool[sorted(rng.choice(pool.height, size=min(patients, pool.height), replace=False).tolist())]
    rows = pl.DataFrame(
        [
            {"encounter_id": encounter, "charttime": time.strftime("%Y-%m-%dT%H:%M:%SZ"), "variable": variable,
             "value": values[index], "unit": unit, "source": "demo-feed"}
            for encounter in chosen["encounter_id"]
            for index, time in enumerate(times)
            for variable, (values, unit) in DETERIORATING_VITALS.items()
            if values[index]
        ]
    )
    inbox = settings.home / INBOX
    inbox.mkdir(parents=True, exist_ok=True)
    name = f"observations-demo-{hour:%Y%m%dT%H%M}-{seed}.csv"
    path = inbox / name
    counter = 1
    while path.exists():
        path = inbox / f"observations-demo-{hour:%Y%m%dT%H%M}-{seed}-{counter}.csv"
        counter += 1
    scratch = settings.home / f".{path.name}.part"
    rows.write_csv(scratch)
    scratch.replace(path)
    encounters = [
        {"encounter_id": r["encounter_id"], "ward": r["ward"], "risk": r["risk"]}
        for r in chosen.iter_rows(named=True)
    ]
    return DemoFeed(path, hour, charttime, encounters, rows.height)
