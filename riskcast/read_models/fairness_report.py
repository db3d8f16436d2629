"""Read models for the Fairness page: the store's `audits` table (one row per `riskcast
audit`, with a summary) and each audit's JSON report (reports/audit-<version>-<run id>.json),
read through riskcast.pipeline.reports (the one owner of report files).

A suppressed audit group (too few patients or events) carries no number here, even when
its JSON does: every metric and count of it is null, and `suppressed` is True. A report that
is missing reads as None (the page says what to run); one that exists but cannot be read
raises EvaluationError naming the file and what to run.

Every time is UTC-aware (polars Datetime("us", "UTC")).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, select

from riskcast.fairness import METRIC_LABELS, AuditReport, GateResult
from riskcast.pipeline.reports import ReportStore, audit_report_name
from riskcast.read_models.report_values import (
    UTC,
    integer_or_none,
    mapping_or_empty,
    number_or_none,
    records_frame,
    text_or_none,
)
from riskcast.store.tables import audits

AUDITS_SCHEMA: dict[str, pl.DataType] = {
    "audit_id": pl.Int64(),
    "model_version": pl.String(),
    "run_id": pl.Int64(),
    "created_at": UTC,
    "verdict": pl.String(),
    "n_fail": pl.Int64(),
    "n_warn": pl.Int64(),
    "n_pass": pl.Int64(),
    "patients": pl.Int64(),
    "events": pl.Int64(),
    "report_name": pl.String(),
}

AUDIT_TREND_SCHEMA: dict[str, pl.DataType] = {
    "audit_id": pl.Int64(),
    "model_version": pl.String(),
    "created_at": UTC,
    "feature": pl.String(),
    "verdict": pl.String(),
    "reference": pl.String(),
    "reported_groups": pl.Int64(),
    "suppressed_groups": pl.Int64(),
    "equalized_odds_difference": pl.Float64(),
    "equalized_odds_difference_low": pl.Float64(),
    "equalized_odds_difference_high": pl.Float64(),
    "demographic_parity_ratio": pl.Float64(),
    "demographic_parity_ratio_low": pl.Float64(),
    "demographic_parity_ratio_high": pl.Float64(),
    "lowest_sensitivity_ratio": pl.Float64(),
    "lowest_sensitivity_ratio_group": pl.String(),
}

GROUP_METRICS: tuple[str, ...] = (
    "sensitivity",
    "false_positive_rate",
    "ppv",
    "selection_rate",
    "alerts_per_100_patient_days",
    "auroc",
    "calibration_in_the_large",
    "measurements_per_day",
    "share_hours_unmeasured",
)
"""The per-group metrics the fairness page shows, in order; each has `{metric}_low` and
`{metric}_high` (95% patient-bootstrap interval) in AUDIT_GROUPS_SCHEMA."""

GROUP_POINT_METRICS: tuple[str, ...] = ("ece", "median_lead_time_hours", "encounter_sensitivity")
"""Per-group metrics without an interval."""

GROUP_METRIC_LABELS: Mapping[str, str] = {m: METRIC_LABELS.get(m, m) for m in (*GROUP_METRICS, *GROUP_POINT_METRICS)}

AUDIT_GROUPS_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "group": pl.String(),
    "suppressed": pl.Boolean(),
    "reference": pl.Boolean(),
    "n_patients": pl.Int64(),
    "n_events": pl.Int64(),
    "patient_days": pl.Float64(),
    **{f"{m}{suffix}": pl.Float64() for m in GROUP_METRICS for suffix in ("", "_low", "_high")},
    **{m: pl.Float64() for m in GROUP_POINT_METRICS},
}

AUDIT_GATES_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "gate": pl.String(),
    "group": pl.String(),
    "reference": pl.String(),
    "metric": pl.String(),
    "compare": pl.String(),
    "verdict": pl.String(),
    "value": pl.Float64(),
    "interval_low": pl.Float64(),
    "interval_high": pl.Float64(),
    "bound": pl.Float64(),
    "reason": pl.String(),
}

AUDIT_FEATURES_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "verdict": pl.String(),
    "reference": pl.String(),
    "reported_groups": pl.Int64(),
    "suppressed_groups": pl.Int64(),
}

OVERALL_SCHEMA: dict[str, pl.DataType] = {
    "metric": pl.String(),
    "label": pl.String(),
    "value": pl.Float64(),
    "low": pl.Float64(),
    "high": pl.Float64(),
}

VERDICT_ORDER = {"fail": 0, "warn": 1, "pass": 2}


def _summary_counts(summary: Mapping[str, Any]) -> dict[str, int | None]:
    counts = mapping_or_empty(summary.get("gate_counts"))
    return {f"n_{v}": integer_or_none(counts.get(v)) for v in ("fail", "warn", "pass")}


def audit_history(engine: Engine, *, model_version: str | None = None, limit: int = 100) -> pl.DataFrame:
    """The latest `limit` fairness audits (store `audits`), newest first; of `model_version`
    only when given. Columns AUDITS_SCHEMA: the gate counts, patients and events come from
    each audit's summary; `report_name` is its HTML report's file name in the reports folder."""
    rows = []
    for record in _audit_records(engine, model_version=model_version, newest_first=True, limit=limit):
        summary = mapping_or_empty(record.summary)
        rows.append(
            {"audit_id": record.id, "model_version": record.model_version, "run_id": record.run_id,
             "created_at": record.created_at, "verdict": record.verdict, **_summary_counts(summary),
             "patients": integer_or_none(summary.get("patients")), "events": integer_or_none(summary.get("events")),
             "report_name": audit_report_name(record.report_path)}
        )  # fmt: skip
    return records_frame(rows, AUDITS_SCHEMA)


def _audit_records(engine: Engine, *, model_version: str | None, newest_first: bool,
                   limit: int | None = None) -> list[Any]:
    """The store's audits in creation order (ties by id), of `model_version` when given."""
    order = (audits.c.created_at.desc(), audits.c.id.desc()) if newest_first else (audits.c.created_at, audits.c.id)
    query = select(audits).order_by(*order)
    if model_version is not None:
        query = query.where(audits.c.model_version == model_version)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as connection:
        return list(connection.execute(query).all())


def audit_trend(engine: Engine, *, model_version: str | None = None) -> pl.DataFrame:
    """How each feature's verdict and disparity summaries moved across audits, oldest first
    (one row per audit and feature; columns AUDIT_TREND_SCHEMA), from the audits' summaries.
    Intersections (features joined by " & ") are included as their own features."""
    rows = []
    for record in _audit_records(engine, model_version=model_version, newest_first=False):
        for feature, entry in mapping_or_empty(mapping_or_empty(record.summary).get("features")).items():
            entry = mapping_or_empty(entry)
            row: dict[str, Any] = {
                "audit_id": record.id, "model_version": record.model_version, "created_at": record.created_at,
                "feature": feature, "verdict": text_or_none(entry.get("verdict")), "reference": text_or_none(entry.get("reference")),
                "reported_groups": integer_or_none(entry.get("reported_groups")),
                "suppressed_groups": integer_or_none(entry.get("suppressed_groups")),
                "lowest_sensitivity_ratio_group": text_or_none(entry.get("lowest_sensitivity_ratio_group")),
            }  # fmt: skip
            for name in AUDIT_TREND_SCHEMA:
                if name not in row:
                    row[name] = number_or_none(entry.get(name))
            rows.append(row)
    return records_frame(rows, AUDIT_TREND_SCHEMA)


@dataclass(frozen=True)
class AuditDetail:
    """One fairness audit, read from its JSON report, for the fairness page.

    `features`: each audited feature's verdict, reference group and how many groups were
    reported or suppressed (AUDIT_FEATURES_SCHEMA). `groups`: one row per feature and group
    (AUDIT_GROUPS_SCHEMA): counts, GROUP_METRICS with 95% intervals, GROUP_POINT_METRICS;
    every number of a suppressed group is null. `gates`: every gate result (AUDIT_GATES_SCHEMA),
    fail first, then warn, then pass. `overall`: each metric over all held-out patients with
    its interval (OVERALL_SCHEMA). `suppressed_label` is the audit's words for a suppressed
    group ("suppressed (<10 patients or <10 events)"). `report_name` is the HTML report's file
    name in the reports folder (None when it is missing).
    """

    audit_id: int
    model_version: str
    run_id: int | None
    created_at: datetime
    verdict: str
    json_path: Path
    report_name: str | None
    outcome: str | None
    horizon_hours: float | None
    threshold: float | None
    n_patients: int | None
    n_encounters: int | None
    n_rows: int | None
    n_events: int | None
    patient_days: float | None
    n_boot: int | None
    confidence: float | None
    min_patients: int | None
    min_events: int | None
    gates_source: str | None
    suppressed_label: str
    features: pl.DataFrame
    groups: pl.DataFrame
    gates: pl.DataFrame
    overall: pl.DataFrame


def _suppressed_label(report: AuditReport) -> str:
    for feature in report.features.values():
        if "suppressed" in feature.groups.columns and feature.groups["suppressed"].any():
            return feature.suppressed_label
    return f"suppressed (<{report.min_patients} patients or <{report.min_events} events)"


def _group_row(feature: str, group: Mapping[str, Any]) -> dict[str, Any]:
    suppressed = bool(group.get("suppressed"))
    row: dict[str, Any] = {
        "feature": feature,
        "group": str(group.get("group")),
        "suppressed": suppressed,
        "reference": bool(group.get("reference")) and not suppressed,
    }
    for name, dtype in AUDIT_GROUPS_SCHEMA.items():
        if name in row:
            continue
        value = None if suppressed else group.get(name)  # a suppressed group shows no number, ever
        row[name] = integer_or_none(value) if dtype == pl.Int64() else number_or_none(value)
    return row


def _gate_row(gate: GateResult) -> dict[str, Any]:
    low, high = (None, None) if gate.interval is None else (number_or_none(gate.interval[0]), number_or_none(gate.interval[1]))
    return {
        "feature": gate.feature, "gate": gate.gate, "group": gate.group, "reference": gate.reference,
        "metric": gate.metric, "compare": gate.compare, "verdict": str(gate.verdict), "value": number_or_none(gate.value),
        "interval_low": low, "interval_high": high, "bound": number_or_none(gate.bound), "reason": gate.reason,
    }  # fmt: skip


def _overall_rows(overall: Mapping[str, float]) -> list[dict[str, Any]]:
    rows = []
    for metric in (*GROUP_METRICS, *GROUP_POINT_METRICS):
        if metric in overall:
            rows.append(
                {"metric": metric, "label": GROUP_METRIC_LABELS[metric], "value": number_or_none(overall.get(metric)),
                 "low": number_or_none(overall.get(f"{metric}_low")), "high": number_or_none(overall.get(f"{metric}_high"))}
            )  # fmt: skip
    return rows


def audit_detail(
    engine: Engine,
    reports: ReportStore,
    *,
    audit_id: int | None = None,
    model_version: str | None = None,
) -> AuditDetail | None:
    """The audit `audit_id` (default: the latest, of `model_version` when given) with its
    JSON report from the reports folder; None when there is no such audit or its JSON report
    is gone. Raises EvaluationError, naming the file and what to run, when the report exists
    but cannot be read."""
    if audit_id is not None:
        with engine.connect() as connection:
            record = connection.execute(select(audits).where(audits.c.id == audit_id)).one_or_none()
    else:
        latest = _audit_records(engine, model_version=model_version, newest_first=True, limit=1)
        record = latest[0] if latest else None
    if record is None:
        return None
    json_path = reports.audit_json_path(record.report_path, record.model_version, record.run_id)
    document = None if json_path is None else reports.audit_document(json_path)
    if json_path is None or document is None:
        return None
    meta, report = document.meta, document.audit
    features, groups, gates = [], [], []
    for name, feature in report.features.items():
        members = feature.groups.to_dicts()
        features.append(
            {"feature": name, "verdict": str(feature.verdict), "reference": feature.reference,
             "reported_groups": integer_or_none(feature.summary.get("reported_groups", sum(1 for g in members if not g["suppressed"]))),
             "suppressed_groups": integer_or_none(feature.summary.get("suppressed_groups", sum(1 for g in members if g["suppressed"])))}
        )  # fmt: skip
        groups.extend(_group_row(name, group) for group in members)
        gates.extend(_gate_row(gate) for gate in feature.gates)
    gate_frame = records_frame(gates, AUDIT_GATES_SCHEMA)
    if gate_frame.height:
        gate_frame = gate_frame.sort(pl.col("verdict").replace_strict(VERDICT_ORDER, default=3), maintain_order=True)
    html_name = audit_report_name(record.report_path)
    html_file = reports.audit_file(html_name) if html_name is not None and html_name.endswith(".html") else None
    return AuditDetail(
        audit_id=int(record.id),
        model_version=record.model_version,
        run_id=record.run_id,
        created_at=record.created_at,
        verdict=str(report.verdict),
        json_path=json_path,
        report_name=None if html_file is None else html_file.name,
        outcome=text_or_none(meta.get("outcome")),
        horizon_hours=number_or_none(meta.get("horizon_hours")),
        threshold=number_or_none(report.threshold),
        n_patients=report.n_patients,
        n_encounters=report.n_encounters,
        n_rows=report.n_rows,
        n_events=report.n_events,
        patient_days=number_or_none(report.patient_days),
        n_boot=report.n_boot,
        confidence=number_or_none(report.confidence),
        min_patients=report.min_patients,
        min_events=report.min_events,
        gates_source=report.gates_source,
        suppressed_label=_suppressed_label(report),
        features=records_frame(features, AUDIT_FEATURES_SCHEMA),
        groups=records_frame(groups, AUDIT_GROUPS_SCHEMA),
        gates=gate_frame,
        overall=records_frame(_overall_rows(report.overall), OVERALL_SCHEMA),
    )


def audit_report_file(engine: Engine, reports: ReportStore, audit_id: Any) -> Path | None:
    """The self-contained HTML report of audit `audit_id`: a file directly in the reports folder
    named like audit-<version>-<run id>.html, or None (no such audit, no such file). The
    stored directory is never followed, only the file name."""
    if isinstance(audit_id, bool) or not isinstance(audit_id, int):
        return None
    with engine.connect() as connection:
        report_path = connection.execute(select(audits.c.report_path).where(audits.c.id == audit_id)).scalar_one_or_none()
    name = audit_report_name(report_path)
    if name is None or not name.endswith(".html"):
        return None
    return reports.audit_file(name)


__all__ = [
    "AUDITS_SCHEMA",
    "AUDIT_FEATURES_SCHEMA",
    "AUDIT_GATES_SCHEMA",
    "AUDIT_GROUPS_SCHEMA",
    "AUDIT_TREND_SCHEMA",
    "AuditDetail",
    "GROUP_METRICS",
    "GROUP_METRIC_LABELS",
    "GROUP_POINT_METRICS",
    "OVERALL_SCHEMA",
    "VERDICT_ORDER",
    "audit_detail",
    "audit_history",
    "audit_report_file",
    "audit_trend",
]
