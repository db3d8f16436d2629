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

import html
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots
from sqlalchemy import Engine, insert

from riskcast.config import Settings, make_private_dir, read_yaml_config
from riskcast.errors import ConfigError, ModelError
from riskcast.fairness import (
    DEFAULT_GATES_FILE,
    MEASUREMENT_VARIABLE,
    METRIC_LABELS,
    SENSITIVE_FEATURES,
    AuditReport,
    FeatureAudit,
    GateConfig,
    Verdict,
    audit,
    parse_gates,
)
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.external import model_outcome
from riskcast.pipeline.training import HELD_OUT_FILE
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
    held_out = registry.read_json(version, HELD_OUT_FILE)
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


def _atomic_write(path: Path, text: str) -> None:
    """Write a report under a private temporary name and rename it: owner-only (0600 in 0700
    folders), like everything under the home; the dashboard runs as the same user."""
    make_private_dir(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
            stem = f"audit-{version}-{run_id}"
            html_path = settings.reports_dir / f"{stem}.html"
            json_path = settings.reports_dir / f"{stem}.json"
            meta = {**meta, "model_version": version, "run_id": run_id, "generated_at": now.isoformat()}
            page = render_html(report, meta=meta)
            document = json.dumps({"meta": meta, "audit": report.to_dict()}, indent=2)
            progress(f"writing {html_path}")
            _atomic_write(html_path, page)
            _atomic_write(json_path, document)
            if out is not None:
                _atomic_write(Path(out), document if Path(out).suffix == ".json" else page)
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


# --------------------------------------------------------------------------- the HTML report

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} h2{margin-top:2.5rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.88rem} th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
th{background:#f5f5f5} td.text,th.text{text-align:left} tr.reference td{background:#f3f8ff}
.verdict{display:inline-block;padding:.1rem .6rem;border-radius:.3rem;font-weight:600;color:#fff}
.pass{background:#2e7d32} .warn{background:#ed8c00} .fail{background:#c62828}
.scroll{overflow-x:auto} .muted{color:#666} .suppressed{color:#888;font-style:italic} .note{background:#fffbe6;border:1px solid #f0e0a0;padding:.6rem 1rem}
"""


def _text(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: float | None, *, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    text = f"{value:.{digits}f}" if abs(value) >= 0.095 or value == 0 else f"{value:.2g}"
    return text.replace("-", "\u2212")


def _with_interval(row: Mapping[str, Any], metric: str, *, digits: int = 2) -> str:
    value, low, high = row.get(metric), row.get(f"{metric}_low"), row.get(f"{metric}_high")
    if value is None or not math.isfinite(value):
        return "—"
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return _fmt(value, digits=digits)
    return f"{_fmt(value, digits=digits)} <span class='muted'>({_fmt(low, digits=digits)} to {_fmt(high, digits=digits)})</span>"


def _verdict(verdict: str) -> str:
    return f"<span class='verdict {_text(verdict)}'>{_text(str(verdict).upper())}</span>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 1,
           row_classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th class='text'>{_text(h)}</th>" if i < text_columns else f"<th>{_text(h)}</th>" for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cells = "".join(f"<td class='text'>{c}</td>" if i < text_columns else f"<td>{c}</td>" for i, c in enumerate(row))
        css = f" class='{row_classes[r]}'" if row_classes and row_classes[r] else ""
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


_GROUP_COLUMNS = (
    ("selection_rate", 3), ("sensitivity", 2), ("false_positive_rate", 3), ("ppv", 2), ("false_negative_rate", 2),
    ("auroc", 2), ("calibration_in_the_large", 3), ("ece", 3), ("alerts_per_100_patient_days", 1),
    ("median_lead_time_hours", 1), ("measurements_per_day", 1), ("share_hours_unmeasured", 2),
)
_DISPARITY_METRICS = ("sensitivity", "false_positive_rate", "ppv", "selection_rate", "auroc",
                      "calibration_in_the_large", "alerts_per_100_patient_days", "measurements_per_day")
_FIGURE_METRICS = ("sensitivity", "false_positive_rate", "alerts_per_100_patient_days", "measurements_per_day")


def _groups_table(feature: FeatureAudit) -> str:
    header = ["group", "patients", "events", "patient-days", *[METRIC_LABELS[m] for m, _ in _GROUP_COLUMNS]]
    rows, classes = [], []
    for row in feature.groups.to_dicts():
        name = _text(row["group"]) + (" <span class='muted'>(reference)</span>" if row["reference"] else "")
        if row["suppressed"]:
            rows.append([name, *[f"<span class='suppressed'>{_text(feature.suppressed_label)}</span>"] * (len(header) - 1)])
            classes.append("")
            continue
        rows.append([
            name, f"{row['n_patients']:,}", f"{row['n_events']:,}", f"{row['patient_days']:,.0f}",
            *[_with_interval(row, m, digits=d) for m, d in _GROUP_COLUMNS],
        ])
        classes.append("reference" if row["reference"] else "")
    return _table(header, rows, row_classes=classes)


def _disparity_table(feature: FeatureAudit) -> str:
    if feature.disparities.height == 0:
        return "<p class='muted'>No group to compare with the reference.</p>"
    header = ["group", "metric", "value", f"reference ({feature.reference})", "difference (95% CI)", "ratio (95% CI)"]
    rows = []
    for row in feature.disparities.filter(pl.col("metric").is_in(list(_DISPARITY_METRICS))).to_dicts():
        rows.append([
            _text(row["group"]), _text(METRIC_LABELS[row["metric"]]), _fmt(row["value"], digits=3),
            _fmt(row["reference_value"], digits=3), _with_interval(row, "difference", digits=3),
            _with_interval(row, "ratio", digits=2),
        ])
    return _table(header, rows, text_columns=2)


def _feature_figure(feature: FeatureAudit) -> go.Figure | None:
    reported = feature.groups.filter(~pl.col("suppressed"))
    if reported.height == 0:
        return None
    figure = make_subplots(rows=1, cols=len(_FIGURE_METRICS), subplot_titles=[METRIC_LABELS[m] for m in _FIGURE_METRICS])
    names = reported.get_column("group").to_list()
    colours = ["#1f5fa8" if r else "#7a9cc6" for r in reported.get_column("reference").to_list()]
    for column, metric in enumerate(_FIGURE_METRICS, start=1):
        values = reported.get_column(metric).to_list()
        low, high = reported.get_column(f"{metric}_low").to_list(), reported.get_column(f"{metric}_high").to_list()
        plus = [None if v is None or h is None else h - v for v, h in zip(values, high, strict=True)]
        minus = [None if v is None or lo is None else v - lo for v, lo in zip(values, low, strict=True)]
        figure.add_trace(
            go.Bar(x=names, y=values, marker_color=colours, name=METRIC_LABELS[metric], showlegend=False,
                   error_y={"type": "data", "array": plus, "arrayminus": minus, "visible": True}),
            row=1, col=column,
        )
    suppressed = feature.groups.height - reported.height
    title = f"{feature.feature}: by group, 95% patient-bootstrap intervals (darker: reference)"
    if suppressed:
        title += f"; {suppressed} group(s) {feature.suppressed_label} not shown"
    figure.update_layout(title=title, height=380, margin={"t": 80, "b": 100}, template="plotly_white")
    return figure


def _mitigation_section(report: AuditReport) -> str:
    parts = ["<h2>Mitigation, for discussion (never applied)</h2>"]
    if not report.mitigations:
        parts.append("<p class='muted'>No feature failed a gate, so no mitigation is shown "
                     "(<code>riskcast audit --mitigate FEATURE</code> shows it anyway).</p>")
        return "".join(parts)
    parts.append(
        "<p class='note'>These rules are <b>not applied</b> to scoring. They use the sensitive attribute at "
        "scoring time, which raises legal and ethical questions, and they are fitted and measured on the same "
        "held-out rows, so they look better here than they would on new patients. They show what closing the "
        "gap would cost: look at the alert burden columns.</p>"
    )
    metrics = ("sensitivity", "false_positive_rate", "selection_rate", "alerts_per_100_patient_days")
    for mitigation in report.mitigations:
        parts.append(f"<h3>{_text(mitigation.feature)}: {_text(mitigation.method)}</h3><p class='muted'>{_text(mitigation.note)}</p>")
        header = ["group", "rule", *[f"{METRIC_LABELS[m].split(',')[0]}: before → after" for m in metrics]]
        rows = [
            [_text(r["group"]), _text(r["rule"]), *[f"{_fmt(r[f'before_{m}'], digits=3)} → {_fmt(r[f'after_{m}'], digits=3)}" for m in metrics]]
            for r in mitigation.groups.to_dicts()
        ]
        overall = mitigation.overall
        rows.append(["<b>all reported groups</b>", "",
                     *[f"{_fmt(overall[f'before_{m}'], digits=3)} → {_fmt(overall[f'after_{m}'], digits=3)}" for m in metrics]])
        parts.append(_table(header, rows, text_columns=2))
    return "".join(parts)


def render_html(report: AuditReport, *, meta: Mapping[str, Any]) -> str:
    """The audit as one self-contained HTML page (plotly.js inlined: it reads offline).

    Suppressed groups appear only as their name and the suppression note, never a number.
    """
    version = meta.get("model_version", "")
    gates = sorted(report.gates, key=lambda g: {Verdict.FAIL: 0, Verdict.WARN: 1, Verdict.PASS: 2}[g.verdict])
    findings = [g for g in gates if g.verdict != Verdict.PASS]
    passes = [g for g in gates if g.verdict == Verdict.PASS]
    body = [
        f"<h1>Fairness audit of {_text(version)}</h1>",
        f"<p class='muted'>Run {_text(meta.get('run_id', ''))}, generated {_text(meta.get('generated_at', ''))}. "
        f"Outcome {_text(meta.get('outcome', ''))} within {_text(meta.get('horizon_hours', ''))} h; held-out patients "
        f"only: {report.n_patients:,} patients, {report.n_encounters:,} encounters, {report.n_rows:,} hours "
        f"({report.patient_days:,.0f} patient-days), {report.n_events:,} events. Operating point: risk ≥ "
        f"{report.threshold:.4g}.</p>",
        f"<p>Verdict: {_verdict(report.verdict)} — {len([g for g in gates if g.verdict == Verdict.FAIL])} fail, "
        f"{len([g for g in gates if g.verdict == Verdict.WARN])} warn, {len(passes)} pass.</p>",
        "<h2>Gates</h2>",
        f"<p class='muted'>Bounds from {_text(report.gates_source)}. A gate fails only when the estimate breaks "
        f"its fail bound <i>and</i> the {report.confidence:.0%} bootstrap interval (patients resampled, "
        f"{report.n_boot} times) excludes no difference; otherwise it warns. Gates on intersections never fail.</p>",
    ]
    intersections = {name for name, f in report.features.items() if len(f.columns) > 1}
    single = [g for g in findings if g.feature not in intersections]
    paired = [g for g in findings if g.feature in intersections]
    if single:
        body.append(_table(["verdict", "gate", "reason"], [[_verdict(g.verdict), _text(g.gate), _text(g.reason)] for g in single], text_columns=3))
    elif not paired:
        body.append("<p>Every gate passed.</p>")
    else:
        body.append("<p>Every gate on a single feature passed.</p>")
    if paired:
        body.append(f"<details><summary>{len(paired)} warning(s) on intersections of two features</summary>"
                    + _table(["verdict", "gate", "reason"], [[_verdict(g.verdict), _text(g.gate), _text(g.reason)] for g in paired], text_columns=3)
                    + "</details>")
    if passes:
        body.append(f"<details><summary>{len(passes)} gates passed</summary>"
                    + _table(["gate", "reason"], [[_text(g.gate), _text(g.reason)] for g in passes], text_columns=2)
                    + "</details>")

    overall = dict(report.overall)
    body += [
        "<h2>Overall</h2>",
        _table(["metric", "all held-out patients (95% CI)"],
               [[_text(METRIC_LABELS[m]), _with_interval(overall, m, digits=3)] for m, _ in _GROUP_COLUMNS], text_columns=1),
    ]
    figures_html = []
    for feature in report.features.values():
        summary = feature.summary
        line = [f"Reference group: <b>{_text(feature.reference)}</b>." if feature.reference else "No group large enough to report."]
        if "equalized_odds_difference" in summary:
            line.append(
                f"Equalized-odds difference {_with_interval(summary, 'equalized_odds_difference', digits=3)}; "
                f"demographic-parity ratio {_with_interval(summary, 'demographic_parity_ratio', digits=2)} "
                "(between the reported groups)."
            )
        figure = _feature_figure(feature)
        section = [f"<h2>{_text(feature.feature)} {_verdict(feature.verdict)}</h2>", f"<p>{' '.join(line)}</p>"]
        if figure is not None:
            section.append(figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))
        section += ["<h3>Groups</h3>", _groups_table(feature), "<h3>Compared with the reference</h3>", _disparity_table(feature)]
        figures_html.append("".join(section))
    body += figures_html
    body.append(_mitigation_section(report))
    body.append(
        "<h2>Method</h2><ul>"
        "<li>Rows are the held-out patients' hourly scores; flagged = risk ≥ the model's threshold. Selection rate, "
        "sensitivity, false-positive rate, PPV and false-negative rate are per hour (Fairlearn MetricFrame).</li>"
        "<li>Intervals: percentile bootstrap resampling patients (all their hours together). Differences and "
        "ratios to the reference use the same resamples (paired). AUROC intervals resample patients within the group.</li>"
        f"<li>Groups with fewer than {report.min_patients} patients or {report.min_events} events (encounters with a "
        f"positive hour) are suppressed: no number is shown for them, and they are left out of comparisons.</li>"
        "<li>Lead time: from the first flag in the 48 h before an event to the event. Alerts: episodes (runs of "
        "flagged hours) per 100 patient-days. Measurement: heart-rate observations per day (mean of the 24 h "
        "count) and the share of hours whose last heart rate is more than 4 h old.</li>"
        "<li>Calibration-in-the-large: mean predicted risk minus the observed rate (positive: over-predicts). "
        "ECE over 10 equal-frequency bins.</li></ul>"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Fairness audit {_text(version)}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        + "".join(body)
        + "</body></html>"
    )
