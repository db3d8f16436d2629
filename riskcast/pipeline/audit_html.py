"""The fairness audit as one self-contained HTML page: ``render_html(report, meta=...)``.

Drawing only: the numbers are the AuditReport's (riskcast.fairness), the page's header
(model version, run, outcome) is ``meta``'s; nothing is read or written here. plotly.js is
inlined, so the page reads offline. Suppressed groups appear only as their name and the
suppression note, never a number.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from riskcast.fairness import METRIC_LABELS, AuditReport, FeatureAudit, Verdict

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
