"""The fairness audit of a registered model: score its held-out patients, audit, report, record.

    run = audit_model(settings, ModelRegistry(settings.models_dir), now=now)
    run.verdict        # "pass" | "warn" | "fail"
    run.html_path      # reports/audit-<version>-<run id>.html, readable offline
    run.json_path      # reports/audit-<version>-<run id>.json

The held-out patients are those the model never saw in training (registry.path_of(version) /
heldout_patients.json); their hourly feature matrix is rebuilt from the lake with the model's
own outcome and horizon and scored with the model. The audit itself is riskcast.fairness
(pure); this module adds the I/O: the gates file it is held to, the run in the store's `runs`
table, the HTML and JSON reports, and a row in `audits` (model_version, run_id, verdict,
summary, report_path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, insert

from riskcast.config import Settings, read_yaml_config
from riskcast.errors import ConfigError, ModelError
from riskcast.fairness import (
    DEFAULT_GATES_FILE,
    MEASUREMENT_VARIABLE,
    SENSITIVE_FEATURES,
    AuditReport,
    GateConfig,
    audit,
    parse_gates,
)
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.audit_html import render_html
from riskcast.pipeline.external import model_outcome
from riskcast.pipeline.reports import HELD_OUT_FILE, AuditDocument, ReportStore, write_private_text
from riskcast.pipeline.training_data import LabelSource, Labelling, fresh_generation, labelled_shards
from riskcast.store import finish_run, open_store, start_run, write_transaction
from riskcast.store.tables import audits

AUDIT_COLUMNS = ("encounter_id", "patient_id", "time", "label", "event_time")
MEASUREMENT_COLUMNS = (f"{MEASUREMENT_VARIABLE}_count_24h", f"{MEASUREMENT_VARIABLE}_hours_since")


@dataclass(frozen=True)
class AuditRun:
    """One audit of one model version: its verdict, where the reports are, the store's ids."""

    model_version: str
    run_id: int
    audit_id: int
    verdict: str
    report: AuditReport
    html_path: Path
    json_path: Path
    out_path: Path | None
    meta: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The run in brief (the whole audit is in the JSON report)."""
        return {
            "model_version": self.model_version,
            "run_id": self.run_id,
            "audit_id": self.audit_id,
            "verdict": self.verdict,
            "report_html": str(self.html_path),
            "report_json": str(self.json_path),
            "out": None if self.out_path is None else str(self.out_path),
            **dict(self.meta),
            "summary": self.report.summary(),
        }


# --------------------------------------------------------------------------- the gates file


def load_gates(path: str | Path | None = None) -> GateConfig:
    """The fairness gates from ``path``, or the packaged schemas/fairness_gates.yaml when None.

    ConfigError names the file and what is wrong with it. The audit itself takes the result as
    data (riskcast.fairness.audit's ``gates``); reading the file is the flow's business.
    """
    data, source = read_yaml_config(path, packaged=DEFAULT_GATES_FILE, what="fairness gates")
    return parse_gates(data, source=source)


# --------------------------------------------------------------------------- the data


def heldout_predictions(lake: Lake, registry: ModelRegistry, version: str) -> tuple[pl.DataFrame, float, dict[str, Any]]:
    """The audit frame of a model's held-out patients, its threshold, and what was scored.

    One row per labelled encounter-hour of the held-out patients: AUDIT_COLUMNS, ``risk`` (the
    model's calibrated probability), the sensitive attributes and the heart-rate measurement
    columns. Censored rows (label null) are dropped.
    """
    model = registry.load(version)
    outcome, horizon_hours = model_outcome(registry, version)
    held_out = ReportStore(registry).held_out_patients(version)
    if held_out is None:
        raise ModelError(
            f"{version} has no record of its held-out patients ({HELD_OUT_FILE}); "
            "only models trained by `riskcast train` can be audited"
        )
    generation = fresh_generation(lake)
    labels = LabelSource(lake, batches=generation.batches)
    # For sepsis the PhysioNet challenge scores every hour, after onset too (as evaluate_model does).
    labelling = Labelling(outcome, horizon_hours).for_evaluation()
    features = list(model.feature_names_in_)
    wanted = list(dict.fromkeys([*features, *SENSITIVE_FEATURES, *MEASUREMENT_COLUMNS]))
    parts = []
    for frame in labelled_shards(generation, labels, labelling, columns=wanted, patients=held_out):
        if frame.height == 0:
            continue
        risk = model.predict_proba(frame.select(features))[:, 1]
        keep = [*AUDIT_COLUMNS, *[c for c in (*SENSITIVE_FEATURES, *MEASUREMENT_COLUMNS) if c in frame.columns]]
        parts.append(frame.select(keep).with_columns(
            pl.Series("risk", risk, dtype=pl.Float64), *[pl.col(c).cast(pl.Float64) for c in MEASUREMENT_COLUMNS if c in frame.columns]
        ))
    if not parts:
        raise ModelError(
            f"none of the {len(held_out):,} held-out patients of {version} has a labelled hour in the lake at "
            f"{lake.root}; was the lake rebuilt?"
        )
    predictions = pl.concat(parts)
    meta = {
        "outcome": outcome,
        "horizon_hours": horizon_hours,
        "held_out_patients": len(held_out),
        "threshold": float(model.threshold_),
    }
    return predictions, float(model.threshold_), meta


# --------------------------------------------------------------------------- the flow


def audit_model(
    settings: Settings,
    registry: ModelRegistry,
    *,
    now: datetime,
    model_version: str | None = None,
    engine: Engine | None = None,
    lake: Lake | None = None,
    by: Sequence[str] = SENSITIVE_FEATURES,
    intersections: bool = False,
    gates_path: Path | None = None,
    reference: Mapping[str, str] | None = None,
    mitigate: Sequence[str] | None = None,
    n_boot: int | None = None,
    seed: int = 0,
    out: Path | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> AuditRun:
    """Audit a model (default: the champion) on its held-out patients; write reports; record it.

    The run is recorded in the store (`runs`, kind "audit": failed with the error if anything
    goes wrong) and, on success, one row in `audits`. Reports go to settings.reports_dir as
    audit-<version>-<run id>.html and .json; ``out`` writes a copy too (JSON when it ends in
    .json, else HTML). ``engine`` defaults to the store at settings.database_url, ``lake`` to
    settings.lake_dir. Options are those of riskcast.fairness.audit.
    """
    gates = load_gates(gates_path)  # a bad gates file or option fails before anything is recorded
    unknown = [f for f in by if f not in SENSITIVE_FEATURES]
    if unknown or not by:
        raise ConfigError(
            f"cannot audit by {unknown or 'nothing'}: the sensitive features are {', '.join(SENSITIVE_FEATURES)}"
        )
    if mitigate and any(f not in by for f in mitigate):
        raise ConfigError(f"cannot show mitigation for {[f for f in mitigate if f not in by]}: not among the audited features {list(by)}")
    version = model_version or registry.champion()
    if version is None:
        registry.load()  # raises the "no champion yet" message
    version = str(version)
    registry.path_of(version)  # raises for an unknown version
    lake = lake or Lake(settings.lake_dir)
    own_engine = engine is None
    engine = engine or open_store(settings.database_url)
    try:
        options = {"by": list(by), "intersections": intersections, "gates": gates.source, "seed": seed,
                   "n_boot": gates.n_boot if n_boot is None else n_boot}
        run_id = start_run(engine, "audit", model_version=version, details={"options": options}, now=now)
        try:
            progress(f"scoring the held-out patients of {version}")
            frame, threshold, meta = heldout_predictions(lake, registry, version)
            progress(f"auditing {frame.height:,} hours of {frame['patient_id'].n_unique():,} patients by {', '.join(by)}")
            report = audit(
                frame, threshold=threshold, by=by, intersections=intersections, gates=gates, reference=reference,
                mitigate=mitigate, n_boot=n_boot, seed=seed,
            )
            reports = ReportStore.of(settings, registry)
            html_path, json_path = reports.audit_paths(version, run_id)
            meta = {**meta, "model_version": version, "run_id": run_id, "generated_at": now.isoformat()}
            page = render_html(report, meta=meta)
            document = AuditDocument(meta=meta, audit=report)
            progress(f"writing {html_path}")
            reports.write_audit(version, run_id, html=page, document=document)
            if out is not None:
                write_private_text(Path(out), document.to_json() if Path(out).suffix == ".json" else page)
            summary = report.summary()
            with write_transaction(engine) as connection:
                audit_id = connection.execute(
                    insert(audits).values(
                        model_version=version,
                        run_id=run_id,
                        created_at=now,
                        verdict=str(report.verdict),
                        summary=summary,
                        report_path=str(html_path),
                    )
                ).inserted_primary_key[0]
            finish_run(engine, run_id, status="succeeded",
                       details={"verdict": str(report.verdict), "report": str(html_path)}, now=now)
        except BaseException as exc:
            finish_run(engine, run_id, status="failed", error=f"{type(exc).__name__}: {exc}", now=now)
            raise
    finally:
        if own_engine:
            engine.dispose()
    return AuditRun(
        model_version=version,
        run_id=run_id,
        audit_id=int(audit_id),
        verdict=str(report.verdict),
        report=report,
        html_path=html_path,
        json_path=json_path,
        out_path=None if out is None else Path(out),
        meta={k: v for k, v in meta.items() if k not in ("model_version", "run_id")},
    )
