"""The demo: a synthetic cohort through every step, ending in a short summary.

Re-running it reuses what is already there (the cohort, the lake batch, the champion), so
a second `make demo` goes straight to scoring and serving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from riskcast.config import Settings
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.performance import record_weekly_performance
from riskcast.pipeline.reports import ReportStore
from riskcast.pipeline.scoring import score_admitted
from riskcast.pipeline.store_sync import sync_models
from riskcast.pipeline.training import train_and_register
from riskcast.store import open_store
from riskcast.synth import DEFAULT_NOW, generate_cohort, write_cohort


@dataclass(frozen=True)
class DemoSummary:
    """What the demo built, for people (text) and machines (to_dict)."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def text(self) -> str:
        d = self.data
        ev = d["evaluation"]
        lines = [
            "riskcast demo",
            f"  cohort       {d['cohort']['encounters']:,} synthetic encounters in {d['cohort']['path']}",
            f"  ingest       {d['ingest']['accepted']:,} rows accepted, {d['ingest']['quarantined']:,} quarantined",
            f"  model        {d['model_version']} ({d['device']})",
            f"  AUROC        {ev['model_auroc']:.3f} (95% CI {ev['model_auroc_low']:.3f}–{ev['model_auroc_high']:.3f}) "
            f"vs NEWS2 {ev['news2_auroc']:.3f} on {ev['test_patients']:,} held-out patients",
        ]
        if ev.get("news2_sensitivity") is not None:
            lines.append(
                f"  at NEWS2>=5's alert rate ({ev['news2_alert_rate']:.1f} per 100 patient-days): "
                f"model sensitivity {ev['model_sensitivity']:.0%} vs NEWS2 {ev['news2_sensitivity']:.0%}"
            )
        s = d["score"]
        lines += [
            f"  scored at    {s['at']}: {s['admitted']} admitted, {s['flagged']} flagged, "
            f"{s['insufficient_data']} with insufficient data (never shown as low risk)",
            f"  report       {d['report']}",
            f"  home         {d['home']}",
        ]
        return "\n".join(lines)


def _evaluation_summary(report: dict[str, Any], test_patients: int) -> dict[str, Any]:
    disc = report["discrimination"]
    model = disc["risk"]
    news2 = disc.get("NEWS2", {})
    comparison = report.get("comparisons", {}).get("NEWS2", {})
    baseline_metrics = comparison.get("baseline_metrics") or {}
    model_metrics = comparison.get("model_metrics") or {}
    return {
        "model_auroc": model["auroc"],
        "model_auroc_low": model["auroc_ci"][0],
        "model_auroc_high": model["auroc_ci"][1],
        "news2_auroc": news2.get("auroc"),
        "test_patients": test_patients,
        "news2_alert_rate": baseline_metrics.get("alerts_per_100_patient_days"),
        "news2_sensitivity": baseline_metrics.get("sensitivity"),
        "model_sensitivity": model_metrics.get("sensitivity"),
    }


def run_demo(
    settings: Settings,
    *,
    now: datetime,
    encounters: int = 3000,
    seed: int = 7,
    retrain: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> DemoSummary:
    """Synthesise, ingest, train (unless a champion exists), evaluate, and score the hour of
    `now` (the demo clock's; never before the cohort's present); returns the summary."""
    cohort = settings.home / "demo-cohort"
    if not (cohort / "observations.parquet").exists():
        progress(f"building a synthetic cohort of {encounters:,} encounters")
        write_cohort(generate_cohort(encounters, seed=seed), cohort)
    lake = Lake(settings.lake_dir)
    registry = ModelRegistry(settings.models_dir)
    reports = ReportStore.of(settings, registry)
    engine = open_store(settings.database_url)
    try:
        progress("ingesting it into the lake (bad rows are quarantined)")
        ingest_paths([cohort], lake=lake, now=now, source_timezone=settings.source_timezone, database=engine)
        manifests = lake.manifests()
        accepted = sum(sum(m.accepted.values()) for m in manifests)
        quarantined = sum(sum(r.values()) for m in manifests for r in m.quarantined.values())
        if retrain or registry.champion() is None:
            result = train_and_register(
                lake, registry, now=now, reports_dir=settings.reports_dir, progress=progress, seed=seed, database=engine,
            )
            version, device, report = result.version, result.device, result.report.to_dict()
            test_count = result.n_test_patients
        else:
            version = str(registry.champion())
            progress(f"reusing the champion {version} (pass --retrain to train again)")
            sync_models(registry, engine)  # the database may be newer than the models (a fresh store)
            device = (registry.read_json(version, "config.json") or {}).get("device", "cpu")
            report = reports.require_evaluation(version).to_dict()
            test_count = len(reports.held_out_patients(version) or [])
        hour = max(now, DEFAULT_NOW).replace(minute=0, second=0, microsecond=0)
        progress(f"scoring the admitted patients at {hour.isoformat()} (the demo clock's hour)")
        scored = score_admitted(lake, registry, engine, at=hour, now=now, model_version=version)
        # What the nightly job would store for the Model page, so the demo's page has its weeks.
        record_weekly_performance(engine, lake, registry, now=now, model_versions=[version])
    finally:
        engine.dispose()
    return DemoSummary(
        {
            "home": str(settings.home),
            "cohort": {"path": str(cohort), "encounters": encounters},
            "ingest": {"accepted": accepted, "quarantined": quarantined},
            "model_version": version,
            "device": device,
            "evaluation": _evaluation_summary(report, test_count),
            "score": scored.to_dict(),
            "report": str(reports.evaluation_markdown_path(version)),
        }
    )
