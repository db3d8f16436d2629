"""Fairness: the latest audit (or any earlier one) of how the model treats each group of
patients, by sex, age band, race and ethnicity, site and ward, on its held-out patients.

Per group: the metrics with their 95% patient-bootstrap intervals (a group too small to
report shows "suppressed", never a number); the gate verdicts with their reasons in words;
how the verdicts and the disparities moved across audits; and the audit's self-contained
HTML report to download. Everything is read through riskcast.read_models from
the store's `audits` table and the audits' JSON reports (`riskcast audit` writes both);
nurses cannot open this page.
"""

from __future__ import annotations

from typing import Any

import dash
import polars as pl
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from riskcast import read_models
from riskcast.dashboards import auth
from riskcast.dashboards.components.figures import GRAPH_CONFIG, empty_figure
from riskcast.dashboards.components.grids import grid
from riskcast.dashboards.components.notices import not_allowed, notice
from riskcast.dashboards.components.report_figures import groups_figure, trend_figure
from riskcast.dashboards.components.report_text import SUPPRESSED, feature_text, metric_text
from riskcast.dashboards.components.text import clock_text
from riskcast.dashboards.context import context
from riskcast.errors import RiskcastError

PAGE = "fairness"
"""Who may read the audits while auth.ROLE_PAGES does not list this page yet."""
NO_AUDIT = "No audit yet: run `riskcast audit` to audit the champion on its held-out patients."

dash.register_page(__name__, path="/fairness", name="Fairness", title="Fairness · riskcast", order=4, nav=True,
                   riskcast_page=PAGE)  # fmt: skip

VERDICT_PILLS = {"pass": "rc-pill rc-pill-resolved", "warn": "rc-pill rc-pill-insufficient", "fail": "rc-pill rc-pill-new"}
VERDICT_CELLS = {
    "rc-cell-high": "params.value === 'FAIL'",
    "rc-cell-stale": "params.value === 'WARN'",
    "rc-cell-falling": "params.value === 'PASS'",
}
SHOWN_METRICS = ("sensitivity", "false_positive_rate", "ppv", "alerts_per_100_patient_days", "auroc",
                 "calibration_in_the_large", "measurements_per_day")  # fmt: skip
SUPPRESSED_CELL = {"rc-cell-insufficient": "params.data.suppressed"}
SHORT_NAMES = {
    "sensitivity": "Sensitivity", "false_positive_rate": "False-positive rate", "ppv": "PPV",
    "alerts_per_100_patient_days": "Alerts /100 patient-days", "auroc": "AUROC",
    "calibration_in_the_large": "Calibration in the large", "measurements_per_day": "Heart rate obs /day",
}  # fmt: skip

GROUP_COLUMNS: list[dict[str, Any]] = [
    {"field": "group_label", "headerName": "Group", "minWidth": 150},
    {"field": "patients", "headerName": "Patients", "minWidth": 130, "cellClassRules": SUPPRESSED_CELL},
    {"field": "events", "headerName": "Events", "minWidth": 130, "cellClassRules": SUPPRESSED_CELL},
    *[
        {"field": metric, "headerName": SHORT_NAMES[metric], "headerTooltip": read_models.GROUP_METRIC_LABELS[metric],
         "minWidth": 140, "cellClassRules": SUPPRESSED_CELL}
        for metric in SHOWN_METRICS
    ],
]  # fmt: skip
GATE_COLUMNS = [
    {"field": "verdict", "headerName": "Verdict", "maxWidth": 100, "cellClassRules": VERDICT_CELLS},
    {"field": "feature", "headerName": "Feature", "minWidth": 120, "maxWidth": 170},
    {"field": "group", "headerName": "Group", "minWidth": 120, "maxWidth": 200},
    {"field": "gate", "headerName": "Gate", "minWidth": 170, "maxWidth": 230},
    {"field": "reason", "headerName": "Why", "flex": 3, "minWidth": 360},
]
HISTORY_COLUMNS = [
    {"field": "when", "headerName": "Audited", "minWidth": 130},
    {"field": "model_version", "headerName": "Model", "minWidth": 220},
    {"field": "verdict", "headerName": "Verdict", "maxWidth": 110, "cellClassRules": VERDICT_CELLS},
    {"field": "gates", "headerName": "Gates fail / warn / pass", "minWidth": 170},
    {"field": "cohort", "headerName": "Held-out patients (events)", "minWidth": 170},
]


def _page_user() -> auth.DashboardUser | None:
    """The signed-in user when their role may read model reports (never a nurse), else None."""
    return auth.page_user(PAGE)


# ---------------------------------------------------------------------------- words


def _audit_label(row: dict[str, Any], zone: Any) -> str:
    return f"{clock_text(row['created_at'], zone)} · {row['model_version']} · run {row['run_id']} · {str(row['verdict']).upper()}"


def _group_rows(groups: pl.DataFrame) -> list[dict[str, Any]]:
    """Grid rows; every number of a suppressed group is the word "suppressed"."""
    rows = []
    for r in groups.iter_rows(named=True):
        label = r["group"] + (" (reference)" if r["reference"] else "")
        row: dict[str, Any] = {"key": r["group"], "group_label": label, "suppressed": bool(r["suppressed"])}
        if r["suppressed"]:
            row |= {"patients": SUPPRESSED, "events": SUPPRESSED, **{metric: SUPPRESSED for metric in SHOWN_METRICS}}
        else:
            row |= {
                "patients": f"{r['n_patients']:,}" if r["n_patients"] is not None else "–",
                "events": f"{r['n_events']:,}" if r["n_events"] is not None else "–",
                **{m: metric_text(m, r[m], r[f"{m}_low"], r[f"{m}_high"]) for m in SHOWN_METRICS},
            }
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------- layout


def layout(audit: str | None = None, **_: Any) -> html.Div:
    """The latest audit, or the one named by `?audit=<id>`, with a picker for the others
    (nothing at all for nurses)."""
    if _page_user() is None:
        return not_allowed()
    context_ = context()
    history = read_models.audit_history(context_.engine)
    head = html.Div([html.H1("Fairness"), html.Div(id="fairness-summary", className="rc-muted")])
    if history.height == 0:
        return html.Div([html.Div(head, className="rc-page-head"), notice(NO_AUDIT)], id="fairness-none")
    options = [{"label": _audit_label(row, context_.zone), "value": row["audit_id"]} for row in history.iter_rows(named=True)]
    asked = int(audit) if isinstance(audit, str) and audit.isdigit() else None
    chosen = asked if asked in history["audit_id"].to_list() else options[0]["value"]
    metric_options = [{"label": read_models.GROUP_METRIC_LABELS[m], "value": m} for m in SHOWN_METRICS]
    return html.Div(
        [
            html.Div(
                [
                    head,
                    dcc.Dropdown(id="fairness-audit", options=options, value=chosen, clearable=False,
                                 searchable=False, style={"minWidth": "520px"}),
                ],
                className="rc-page-head",
            ),
            html.Div(
                [
                    html.Div([html.H2("Verdict"), html.Div(id="fairness-verdict")], className="rc-card", style={"flex": "2 1 560px"}),
                    html.Div(
                        [
                            html.H2("The full report"),
                            html.P("One self-contained HTML page (charts included, reads offline): every metric, the "
                                   "comparisons with the reference group, and the mitigation analysis.", className="rc-small"),
                            html.Button("Download the HTML report", id="fairness-report-button", className="rc-button rc-button-primary"),
                            html.Div(id="fairness-report-name", className="rc-small rc-muted", style={"marginTop": "0.4rem"}),
                            dcc.Download(id="fairness-download"),
                        ],
                        className="rc-card", style={"flex": "1 1 320px"},
                    ),
                ],
                className="rc-row",
            ),
            html.Div(
                [
                    html.Div(
                        [
                            html.H2("By group"),
                            dcc.Dropdown(id="fairness-feature", options=[], value=None, clearable=False, searchable=False,
                                         style={"minWidth": "240px"}),
                            dcc.Dropdown(id="fairness-metric", options=metric_options, value="sensitivity", clearable=False,
                                         searchable=False, style={"minWidth": "300px"}),
                        ],
                        className="rc-action-controls", style={"marginBottom": "0.6rem"},
                    ),
                    html.Div(id="fairness-feature-note", className="rc-small rc-muted"),
                    dcc.Graph(id="fairness-groups-chart", config=GRAPH_CONFIG),
                    grid("fairness-groups", columns=GROUP_COLUMNS, row_id="key", empty_text="No groups for this feature.",
                         row_class_rules={"rc-row-insufficient": "params.data.suppressed"}),
                ],
                className="rc-card",
            ),
            html.Div(
                [html.H2("Gates, failures and warnings first"),
                 grid("fairness-gates", columns=GATE_COLUMNS, row_id="key", empty_text="No gate applied: no group was large enough to compare.")],
                className="rc-card",
            ),
            html.Div(
                [
                    html.H2("Across audits"),
                    html.Div(id="fairness-trend-note", className="rc-small rc-muted"),
                    dcc.Graph(id="fairness-trend", config=GRAPH_CONFIG),
                    grid("fairness-history", columns=HISTORY_COLUMNS, row_id="key", empty_text="No audits."),
                ],
                className="rc-card",
            ),
        ]
    )  # fmt: skip


# ---------------------------------------------------------------------------- callbacks


MAX_AUDIT_ID = 2**31 - 1
"""The largest id the store's audits table holds (a 32-bit INTEGER on PostgreSQL)."""


def _chosen_audit(audit_id: Any) -> int | None:
    """The audit id the page sent, when it can be one (a whole number in the table's range)."""
    if isinstance(audit_id, bool) or not isinstance(audit_id, int) or not 1 <= audit_id <= MAX_AUDIT_ID:
        return None
    return audit_id


def _verdict_block(detail: read_models.AuditDetail, context_: Any) -> list:
    gates = detail.gates
    counts = {v: gates.filter(pl.col("verdict") == v).height for v in ("fail", "warn", "pass")}
    findings = gates.filter(pl.col("verdict") != "pass")
    cohort = (
        f"{detail.n_patients or 0:,} held-out patients, {detail.n_encounters or 0:,} stays, "
        f"{detail.patient_days or 0:,.0f} patient-days, {detail.n_events or 0:,} with an event "
        f"({detail.outcome or 'outcome'} within {detail.horizon_hours or 0:g} h). Flagged: risk ≥ "
        f"{(detail.threshold or 0) * 100:.2g}%. Intervals: {detail.n_boot or 0} patient-bootstrap resamples. "
        f"Groups with fewer than {detail.min_patients} patients or {detail.min_events} events are suppressed."
    )
    features = [
        html.Li([html.B(feature_text(r["feature"])), f": {str(r['verdict']).upper()}",
                 f" (reference {r['reference']})" if r["reference"] else "",
                 f"; {r['reported_groups']} group{'s' if r['reported_groups'] != 1 else ''} reported, "
                 f"{r['suppressed_groups']} suppressed"])
        for r in detail.features.iter_rows(named=True)
    ]  # fmt: skip
    block: list = [
        html.Div(
            [html.Span(str(detail.verdict).upper(), id="fairness-verdict-pill", className=VERDICT_PILLS.get(detail.verdict, "rc-pill")),
             html.Span(f"  {counts['fail']} fail · {counts['warn']} warn · {counts['pass']} pass · audited "
                       f"{clock_text(detail.created_at, context_.zone, now=context_.clock())} · {detail.model_version}",
                       className="rc-small")],
            style={"marginBottom": "0.5rem"},
        ),
        html.P(cohort, className="rc-small rc-muted"),
    ]  # fmt: skip
    if findings.height:
        block += [html.H3("Findings"),
                  html.Ul([html.Li([html.B(f"{str(r['verdict']).upper()} "), r["reason"] or r["gate"] or ""])
                           for r in findings.iter_rows(named=True)], className="rc-drivers")]  # fmt: skip
    else:
        block.append(html.P("Every gate passed." if gates.height else "No gate could be applied: no group was large enough."))
    block += [html.H3("Features"), html.Ul(features, className="rc-drivers")]
    return block


@callback(
    Output("fairness-summary", "children"),
    Output("fairness-verdict", "children"),
    Output("fairness-feature", "options"),
    Output("fairness-feature", "value"),
    Output("fairness-gates", "rowData"),
    Output("fairness-report-name", "children"),
    Output("fairness-report-button", "disabled"),
    Input("fairness-audit", "value"),
    State("fairness-feature", "value"),
)
def show_audit(audit_id: Any, feature: str | None) -> tuple:
    """Draw the chosen audit's verdict, findings and gates."""
    if _page_user() is None:
        raise PreventUpdate
    chosen = _chosen_audit(audit_id)
    if chosen is None:
        raise PreventUpdate
    context_ = context()
    try:
        detail = read_models.audit_detail(context_.engine, context_.reports, audit_id=chosen)
    except RiskcastError as exc:
        message = html.P(str(exc), className="rc-message-error")
        return "", message, [], None, [], "", True
    if detail is None:
        message = html.P(["This audit's JSON report is missing from ", html.Code(str(context_.settings.reports_dir)),
                          ": run ", html.Code("riskcast audit"), " again."], className="rc-muted")  # fmt: skip
        return "", message, [], None, [], "", True
    options = [{"label": feature_text(f), "value": f} for f in detail.features["feature"].to_list()]
    values = [o["value"] for o in options]
    if not isinstance(feature, str) or feature not in values:
        reported = detail.features.filter(pl.col("reported_groups") > 0)["feature"].to_list()
        feature = reported[0] if reported else (values[0] if values else None)
    gate_rows = [
        {"key": f"{i}", "verdict": str(r["verdict"]).upper(), "feature": feature_text(r["feature"] or ""),
         "group": r["group"] or "", "gate": (r["gate"] or "").replace("_", " "), "reason": r["reason"] or ""}
        for i, r in enumerate(detail.gates.iter_rows(named=True))
    ]  # fmt: skip
    summary = f"{detail.model_version} · held-out patients only · {detail.gates_source or 'default gates'}"
    report = detail.report_name or "The HTML report is missing from the reports folder."
    return summary, _verdict_block(detail, context_), options, feature, gate_rows, report, detail.report_name is None


@callback(
    Output("fairness-groups-chart", "figure"),
    Output("fairness-groups", "rowData"),
    Output("fairness-feature-note", "children"),
    Input("fairness-audit", "value"),
    Input("fairness-feature", "value"),
    Input("fairness-metric", "value"),
)
def show_groups(audit_id: Any, feature: str | None, metric: str | None) -> tuple:
    """Draw one feature's groups: a chart of one metric, and the table of all of them."""
    if _page_user() is None:
        raise PreventUpdate
    chosen = _chosen_audit(audit_id)
    if chosen is None or metric not in SHOWN_METRICS or (feature is not None and not isinstance(feature, str)):
        raise PreventUpdate
    context_ = context()
    try:
        detail = read_models.audit_detail(context_.engine, context_.reports, audit_id=chosen)
    except RiskcastError:
        detail = None
    if detail is None or feature is None:
        return empty_figure("No audit report to draw."), [], ""
    groups = detail.groups.filter(pl.col("feature") == feature)
    described = detail.features.filter(pl.col("feature") == feature)
    note = ""
    if described.height:
        row = described.row(0, named=True)
        note = f"{feature_text(feature)}: reference group {row['reference'] or 'none (no group large enough)'}. "
        if row["suppressed_groups"]:
            note += f"{row['suppressed_groups']} group(s) {detail.suppressed_label}: shown without numbers. "
        note += "Values with 95% patient-bootstrap intervals; hover a column title for its definition."
    figure = groups_figure(groups, metric, overall=detail.overall, suppressed_label=detail.suppressed_label)
    return figure, _group_rows(groups), note


@callback(
    Output("fairness-trend", "figure"),
    Output("fairness-history", "rowData"),
    Output("fairness-trend-note", "children"),
    Input("fairness-audit", "value"),
)
def show_history(audit_id: Any) -> tuple:
    """Draw how verdicts and disparities moved across audits (all model versions)."""
    if _page_user() is None:
        raise PreventUpdate
    context_ = context()
    history = read_models.audit_history(context_.engine)
    trend = read_models.audit_trend(context_.engine)
    rows = [
        {"key": str(r["audit_id"]), "when": clock_text(r["created_at"], context_.zone), "model_version": r["model_version"],
         "verdict": str(r["verdict"]).upper(),
         "gates": " / ".join("–" if r[f"n_{v}"] is None else str(r[f"n_{v}"]) for v in ("fail", "warn", "pass")),
         "cohort": f"{r['patients'] or 0:,} ({r['events'] or 0:,})"}
        for r in history.iter_rows(named=True)
    ]  # fmt: skip
    note = (f"{history.height} audit{'s' if history.height != 1 else ''}, newest first. Marker: ● pass, ◆ warn, ✕ fail "
            "(the feature's worst gate). Only features with two or more reported groups can be compared.")  # fmt: skip
    return trend_figure(trend, selected=_chosen_audit(audit_id), zone=context_.zone), rows, note


@callback(
    Output("fairness-download", "data"),
    Input("fairness-report-button", "n_clicks"),
    State("fairness-audit", "value"),
    prevent_initial_call=True,
)
def download_report(_clicks: int | None, audit_id: Any) -> Any:
    """Send the chosen audit's self-contained HTML report."""
    if _page_user() is None:
        raise PreventUpdate
    chosen = _chosen_audit(audit_id)
    if chosen is None:
        raise PreventUpdate
    context_ = context()
    path = read_models.audit_report_file(context_.engine, context_.reports, chosen)
    if path is None:
        raise PreventUpdate
    return dcc.send_file(str(path), filename=path.name, type="text/html")
