"""The jobs: each a function of a JobContext returning its counts (plain JSON values).

| job          | what it does                                                                  |
|--------------|-------------------------------------------------------------------------------|
| ingest       | files settled in <home>/inbox -> one lake batch -> <home>/archive/<batch>/;   |
|              | quarantined rows also into the store; what cannot be ingested at all ->      |
|              | <home>/inbox/rejected/ with a note of why, and a system alert                 |
| score        | every admitted patient at the scheduled hour, champion model, alerts          |
| escalate     | escalate unacknowledged risk alerts; reopen alerts whose snooze ended          |
| monitor      | feed freshness, drift (PSI) and alert rate; problems -> system alerts         |
| nightly      | score the hour (+ the newest challenger in shadow), evaluate the champion on  |
|              | its held-out patients with the outcomes that have arrived, fairness audit     |
| retrain      | train a challenger, evaluate, audit, score it in shadow; promotion gates      |
| housekeeping | retention of scratch workspaces, store quarantine rows, old job runs          |

A job works as of its scheduled time (`ctx.scheduled_for`), so running it again for the
same time gives the same answer; `ctx.now()` is the wall clock, for timestamps only.
Heavy modules are imported inside the functions: `riskcast jobs list` stays quick.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from riskcast.clock import Clock, wall_clock
from riskcast.config import Settings
from riskcast.errors import ConfigError, IngestError
from riskcast.jobs import inbox
from riskcast.jobs.inbox import ready_entries  # noqa: F401 - part of this module's interface

log = logging.getLogger(__name__)

INBOX = "inbox"
ARCHIVE = "archive"
SCRATCH = "scratch"
AUDIT_MODULE = "riskcast.pipeline.audit"


@dataclass(frozen=True)
class JobContext:
    """What a job gets: its scheduled time (UTC), settings, the store, its options, the clock.

    `step(label)` records how far the run got (job_runs.counts.step) so a person, and the
    run that resumes it after a crash, can see it.
    """

    job: str
    scheduled_for: datetime
    settings: Settings
    engine: Engine
    options: Mapping[str, Any] = field(default_factory=dict)
    clock: Clock = wall_clock
    step: Callable[[str], None] = field(default=lambda label: None)

    def now(self) -> datetime:
        """The wall clock (UTC-aware), for timestamps; decisions use scheduled_for."""
        return self.clock()

    def option(self, name: str, default: Any) -> Any:
        """The job's option `name` from the schedule file, or `default`."""
        return self.options.get(name, default)


@dataclass(frozen=True)
class JobDefinition:
    """A job: its name, its function and one line on what it does."""

    name: str
    run: Callable[[JobContext], dict[str, Any]]
    description: str


# --------------------------------------------------------------------------- ingest


def run_ingest(ctx: JobContext) -> dict[str, Any]:
    """Ingest the settled entries of the inbox and move each where it belongs (riskcast.jobs.inbox).

    Entries of which something could be read go to the archive under their batch; entries
    nothing of which could be ingested go to inbox/rejected/ with a note of why, and the system
    alert "ingest:rejected" is open while any wait there. The next entries go on either way.
    The ingest flow copies each batch's quarantine into the store. Entries whose content is
    already in the lake (e.g. a run killed after the lake commit and before the move) are
    archived under their earlier batch, whose quarantine the flow copies again (idempotent per
    batch). A failure of the lake, the store or the disk fails the run and leaves every entry
    in the inbox; the failure raises a system alert.
    """
    from riskcast.lake import Lake
    from riskcast.pipeline.ingest import ingest_paths

    settings = ctx.settings
    inbox_dir = settings.home / INBOX
    inbox_dir.mkdir(parents=True, exist_ok=True)
    # Files are timed by the wall clock, whatever clock the job runs on (a shifted demo clock).
    ready = inbox.ready_entries(inbox_dir, now=wall_clock(), settle_seconds=float(ctx.option("settle_seconds", 60)))
    if not ready:
        _sync_rejected_alert(ctx, inbox_dir)
        return {"files": 0}
    lake = Lake(settings.lake_dir)
    outcome = inbox.ingest_entries(ready, lambda entries: ingest_paths(
        entries, lake=lake, now=ctx.now(), source_timezone=settings.source_timezone, database=ctx.engine
    ))  # fmt: skip
    ctx.step("committed")
    stored = sum(attempt.summary.quarantine_rows_stored or 0 for attempt in outcome.ingested)
    archived, rejected, empty_batches = [], [], []
    for attempt in outcome.ingested:
        summary = attempt.summary
        kept = [e for e in attempt.entries if e not in outcome.refused]
        archived += [str(inbox.move_aside(e, settings.home / ARCHIVE / inbox.batch_of(e, summary.sources, summary.batch_id)))
                     for e in kept]  # fmt: skip
        if kept and summary.batch_id is not None and summary.total_accepted == 0:
            empty_batches.append(summary)
    for entry, reasons in outcome.refused.items():
        inbox.reject(entry, reasons, inbox=inbox_dir, now=ctx.now(), scheduled_for=ctx.scheduled_for)
        rejected.append(entry.name)
    _sync_rejected_alert(ctx, inbox_dir)
    summaries = [a.summary for a in outcome.ingested]
    batches = [s.batch_id for s in summaries if s.batch_id is not None]
    counts = {
        "files": len(ready),
        "batch_id": batches[0] if batches else None,
        "already_ingested": bool(summaries) and all(s.already_ingested for s in summaries),
        "accepted": _added_up([s.accepted for s in summaries]),
        "quarantined": sum(s.total_quarantined for s in summaries),
        "quarantine_rows_stored": stored,
        "archived": archived,
        "rejected": sorted(rejected),
        "ignored": [p for s in summaries for p in s.ignored],
        "warnings": [w for s in summaries for w in s.warnings],
    }
    if len(batches) > 1:
        counts["batch_ids"] = batches
    if empty_batches:
        summary = empty_batches[0]
        raise IngestError(
            f"batch {summary.batch_id}: no rows were accepted from {len(ready)} inbox file(s) "
            f"({summary.total_quarantined:,} quarantined); see `riskcast quarantine --batch {summary.batch_id}`"
        )
    return counts


def _added_up(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in counts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total


def _sync_rejected_alert(ctx: JobContext, inbox_dir: Path) -> None:
    """Keep the system alert "ingest:rejected" open exactly while inbox/rejected/ holds entries."""
    from riskcast.alerts.state import sync_system_alert

    sync_system_alert(ctx.engine, inbox.ALERT_SUBJECT, inbox.rejected_problem(inbox_dir),
                      raised_for=ctx.scheduled_for, now=ctx.now())  # fmt: skip


# --------------------------------------------------------------------------- score, escalate


def run_score(ctx: JobContext) -> dict[str, Any]:
    """Score every admitted patient at the scheduled hour with the champion; alerts follow."""
    from riskcast.lake import Lake
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.scoring import score_admitted

    summary = score_admitted(
        Lake(ctx.settings.lake_dir), ModelRegistry(ctx.settings.models_dir), ctx.engine,
        at=ctx.scheduled_for, now=ctx.now(),
    )
    ctx.step("scored")
    return summary.to_dict()


def run_escalate(ctx: JobContext) -> dict[str, Any]:
    """Reopen alerts whose snooze has ended, then escalate risk alerts left unacknowledged."""
    from riskcast.alerts.policy import load_policy
    from riskcast.alerts.state import escalate_due, wake_snoozed

    woken = wake_snoozed(ctx.engine, now=ctx.now())
    escalated = escalate_due(ctx.engine, policy_set=load_policy(), now=ctx.now())
    return {"woken": len(woken), "escalated": len(escalated)}


# --------------------------------------------------------------------------- monitor


def run_monitor(ctx: JobContext) -> dict[str, Any]:
    """Feed freshness, drift and alert rate as of the scheduled time (riskcast.pipeline.monitor),
    their system alerts kept in step, and the failed job runs of the window."""
    from riskcast.jobs.runs import failed_runs_by_job
    from riskcast.lake import Lake
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.monitor import MonitorOptions, monitor_data_health

    options = MonitorOptions.from_options(ctx.options)
    report = monitor_data_health(
        Lake(ctx.settings.lake_dir), ModelRegistry(ctx.settings.models_dir), ctx.engine,
        at=ctx.scheduled_for, now=ctx.now(), options=options, step=ctx.step,
    )
    window = timedelta(hours=options.window_hours)
    failed = failed_runs_by_job(ctx.engine, start=ctx.scheduled_for - window, end=ctx.scheduled_for)
    return report.to_dict() | {"failed_jobs": failed}


# --------------------------------------------------------------------------- nightly, retrain


def _evaluation_counts(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an evaluation report (riskcast.evaluate's to_dict)."""
    risk = report.get("discrimination", {}).get("risk", {})
    point = report.get("operating_point", {})
    calibration = report.get("calibration", {})
    return {
        "auroc": risk.get("auroc"),
        "auprc": risk.get("auprc"),
        "brier": calibration.get("brier"),
        "ece": calibration.get("ece"),
        "rows": report.get("n_rows"),
        "patients": report.get("n_patients"),
        "positives": report.get("n_positive"),
        "alerts_per_100_patient_days": point.get("alerts_per_100_patient_days"),
        "sensitivity": point.get("sensitivity"),
    }


def _fairness_audit(ctx: JobContext, registry: Any, lake: Any, version: str) -> dict[str, Any]:
    """The fairness audit of `version` (riskcast.pipeline.audit) in brief, or why it was skipped.

    Imported lazily: without the module the job still runs and records the skip.
    """
    try:
        audit = importlib.import_module(AUDIT_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name and AUDIT_MODULE.startswith(exc.name):
            return {"skipped": f"no fairness audit: {AUDIT_MODULE} is not installed"}
        raise
    run = audit.audit_model(ctx.settings, registry, now=ctx.now(), model_version=version, engine=ctx.engine, lake=lake)
    brief = _jsonable(run)
    summary = brief.get("summary") or {}
    return {
        **{key: brief.get(key) for key in ("model_version", "verdict", "audit_id", "run_id", "report_html")},
        "gate_counts": summary.get("gate_counts"),
        "findings": (summary.get("findings") or [])[:10],
    }


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.loads(json.dumps(value, default=str))


def run_nightly(ctx: JobContext) -> dict[str, Any]:
    """Score the hour (champion; the newest challenger in shadow), evaluate, compute and store
    every version's weekly performance (what the Model page shows), audit fairness."""
    from riskcast.lake import Lake
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.external import evaluate_model
    from riskcast.pipeline.performance import record_weekly_performance
    from riskcast.pipeline.reports import ReportStore
    from riskcast.pipeline.scoring import score_admitted

    settings, at = ctx.settings, ctx.scheduled_for
    lake, registry = Lake(settings.lake_dir), ModelRegistry(settings.models_dir)
    counts: dict[str, Any] = {}
    summary = score_admitted(lake, registry, ctx.engine, at=at, now=ctx.now())
    counts["score"] = {k: summary.to_dict()[k] for k in ("model_version", "admitted", "scored", "written")}
    champion = summary.model_version
    if ctx.option("shadow_challengers", True):
        # The newest challenger trained after the champion (never promoted: not a retired
        # champion), scored beside it without alerts.
        versions = {v.version: v for v in registry.versions()}
        if champion not in versions:
            raise ConfigError(f"the champion {champion} is not in the registry at {registry.models_dir}")
        promoted = {e["version"] for e in registry.events() if e["event"] == "promote"}
        newer = [v for v in versions.values()
                 if v.version not in promoted and v.created_at > versions[champion].created_at]
        counts["shadow"] = {}
        if newer:
            newest = max(newer, key=lambda v: v.created_at).version
            counts["shadow"][newest] = score_admitted(
                lake, registry, ctx.engine, at=at, now=ctx.now(), model_version=newest
            ).written
    ctx.step("scored")

    report, meta = evaluate_model(settings, registry, data_path=None, now=ctx.now(),
                                  n_boot=int(ctx.option("bootstrap", 200)))
    report_dict = report.to_dict()
    out = ReportStore.of(settings, registry).write_nightly_evaluation(champion, at, meta | {"evaluation": report_dict})
    counts["evaluation"] = _evaluation_counts(report_dict) | {"report": str(out)}
    ctx.step("evaluated")

    counts["performance"] = record_weekly_performance(
        ctx.engine, lake, registry, now=ctx.now(), n_boot=int(ctx.option("performance_bootstrap", 100))
    )
    ctx.step("performance stored")

    counts["audit"] = _fairness_audit(ctx, registry, lake, champion)
    return counts


def run_retrain(ctx: JobContext) -> dict[str, Any]:
    """Train a challenger, evaluate and audit it, score it in shadow beside the champion, and
    judge it by the promotion gates (riskcast.pipeline.promotion).

    It becomes champion only through the gates, as riskcast.pipeline.promotion.decide_promotion
    says: with the option promote_when_gates_pass, every gate passing and a held-out AUROC no
    worse than the champion's, the job promotes it (recorded as by "riskcast retrain job");
    otherwise promotion is left to a person (`riskcast models promote`), and the counts say
    which gates failed and why.
    """
    from riskcast.lake import Lake
    from riskcast.model import ModelRegistry
    from riskcast.pipeline.reports import ReportStore
    from riskcast.pipeline.promotion import PromotionDecision, decide_promotion, promote_model, promotion_gates
    from riskcast.pipeline.scoring import score_admitted
    from riskcast.pipeline.training import train_and_register

    settings = ctx.settings
    lake, registry = Lake(settings.lake_dir), ModelRegistry(settings.models_dir)
    champion = registry.champion()
    training_options = {k: ctx.options[k] for k in ("engine", "outcome", "horizon_hours", "alerts_per_100_patient_days",
                                                     "test_fraction", "temporal", "seed", "ablations") if k in ctx.options}
    result = train_and_register(
        lake, registry, now=ctx.now(), promote=False, reports_dir=settings.reports_dir,
        n_boot=int(ctx.option("bootstrap", 200)), database=ctx.engine, **training_options,
    )
    challenger = result.version
    ctx.step("trained")
    counts: dict[str, Any] = {
        "challenger": challenger,
        "champion": champion,
        "challenger_evaluation": _evaluation_counts(result.report.to_dict()) | {"reports": result.report_paths},
    }
    if champion is not None:
        counts["champion_evaluation"] = _evaluation_counts(ReportStore(registry).require_model_card(champion).to_dict()["metrics"]["evaluation"])
        shadow = score_admitted(lake, registry, ctx.engine, at=ctx.scheduled_for, now=ctx.now(), model_version=challenger)
        counts["shadow"] = {k: shadow.to_dict()[k] for k in ("at", "admitted", "scored", "flagged", "written")}
    ctx.step("scored in shadow")
    counts["audit"] = _fairness_audit(ctx, registry, lake, challenger)
    ctx.step("audited")
    gates = promotion_gates(settings, ctx.engine, challenger)
    counts["gates"] = [{"gate": g.name, "passed": g.passed, "reason": g.reason} for g in gates]
    verdict = decide_promotion(
        gates, challenger=challenger, champion=champion,
        challenger_auroc=counts["challenger_evaluation"].get("auroc"),
        champion_auroc=counts.get("champion_evaluation", {}).get("auroc"),
        automatic=bool(ctx.option("promote_when_gates_pass", False)),
    )
    if verdict.decision is PromotionDecision.PROMOTE:
        promote_model(settings, registry, ctx.engine, challenger, by="riskcast retrain job",
                      reason="weekly retrain: every promotion gate passed, AUROC no worse than the champion's",
                      now=ctx.now())  # fmt: skip
    counts["promotion"] = verdict.to_dict()
    return counts


# --------------------------------------------------------------------------- housekeeping


def _older_than(path: Path, cutoff: datetime) -> bool:
    return inbox.newest_mtime(path) < cutoff.timestamp()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _remove_old_folders(folder: Path, cutoff: datetime, *, keep_away: list[Path]) -> list[str]:
    """Delete the direct subfolders of `folder` last changed before `cutoff`; never one that is
    or holds a path in `keep_away` (the lake, the models)."""
    removed = []
    if not folder.is_dir():
        return removed
    for child in sorted(folder.iterdir()):
        if not child.is_dir() or child.is_symlink() or not _inside(child, folder):
            continue
        if any(_inside(protected, child) or _inside(child, protected) for protected in keep_away):
            log.warning("housekeeping: %s holds or is inside a protected folder; left alone", child)
            continue
        if _older_than(child, cutoff):
            shutil.rmtree(child)
            removed.append(child.name)
    return removed


def run_housekeeping(ctx: JobContext) -> dict[str, Any]:
    """Retention: old scratch workspaces, store quarantine rows and finished job runs (and,
    only when archive_days is set, archived inbox files). Never the lake or the models."""
    from riskcast.jobs.runs import delete_finished_runs_before
    from riskcast.pipeline.store_sync import delete_quarantine_before

    settings, at = ctx.settings, ctx.scheduled_for
    keep_away = [settings.lake_dir, settings.models_dir]
    counts: dict[str, Any] = {}
    scratch_days = float(ctx.option("scratch_days", 30))
    counts["scratch_removed"] = _remove_old_folders(
        settings.home / SCRATCH, at - timedelta(days=scratch_days), keep_away=keep_away
    )
    quarantine_days = float(ctx.option("quarantine_days", 365))
    counts["quarantine_rows_deleted"] = delete_quarantine_before(ctx.engine, at - timedelta(days=quarantine_days))
    counts["job_runs_deleted"] = delete_finished_runs_before(
        ctx.engine, at - timedelta(days=float(ctx.option("job_runs_days", 400)))
    )
    archive_days = ctx.option("archive_days", None)
    if archive_days is not None:
        counts["archive_removed"] = _remove_old_folders(
            settings.home / ARCHIVE, at - timedelta(days=float(archive_days)), keep_away=keep_away
        )
    return counts


JOBS: dict[str, JobDefinition] = {
    job.name: job
    for job in (
        JobDefinition("ingest", run_ingest, "ingest settled inbox files into the lake, then archive them"),
        JobDefinition("score", run_score, "score every admitted patient at the hour; raise alerts"),
        JobDefinition("escalate", run_escalate, "escalate unacknowledged alerts; reopen ended snoozes"),
        JobDefinition("monitor", run_monitor, "feed freshness, drift and alert rate; system alerts"),
        JobDefinition("nightly", run_nightly, "score, evaluate the champion, store weekly performance, audit fairness"),
        JobDefinition("retrain", run_retrain, "train, evaluate, audit and shadow-score a challenger; promotion gates"),
        JobDefinition("housekeeping", run_housekeeping, "retention of scratch, quarantine rows and job runs"),
    )
}
