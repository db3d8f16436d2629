"""The model, for data scientists and clinical leads: its card, how well it ranks and how
well its risks are calibrated on held-out patients, against NEWS2, qSOFA, SIRS and the
ablations, whether its operating point kept its promise, how its AUROC and AUPRC moved
week by week on the patients it really scored, and the trade-off between sensitivity,
PPV and alert burden, so the alert budget can be chosen by looking.

`/model` shows the champion; `/model/<version>` (or the picker) any registered version.
Everything is read through riskcast.pipeline.report_views; nurses cannot open this page.
"""

from __future__ import annotations

import math
from typing import Any

import dash
import plotly.graph_objects as go
import polars as pl
from dash import Input, Output, callback, dcc, html
from dash.exceptions import PreventUpdate
from plotly.subplots import make_subplots

from riskcast.dashboards import auth
from riskcast.dashboards.components.figures import FONT, GRAPH_CONFIG, RISK_COLOUR, empty_figure
from riskcast.dashboards.components.grids import grid
from riskcast.dashboards.components.notices import not_allowed, notice
from riskcast.dashboards.context import context
from riskcast.errors import RiskcastError
from riskcast.pipeline import report_views

PAGE = "model"
"""Who may read model reports while auth.ROLE_PAGES does not list this page yet."""

dash.register_page(
    __name__, path="/model", path_template="/model/<version>", name="Model", title="Model · riskcast", order=3,
    nav=True, riskcast_page=PAGE,
)  # fmt: skip

BASELINE_COLOUR = "#6b7385"
ABLATION_COLOUR = "#8a6d00"
PPV_COLOUR = "#1e6b45"
NEWS2_COLOUR = "#a4261c"
MUTED = "#576072"

OVER_TIME_COLUMNS = [
    {"field": "week", "headerName": "Week from", "minWidth": 120},
    {"field": "scored", "headerName": "Hours scored", "maxWidth": 140},
    {"field": "labelled", "headerName": "With outcome known", "minWidth": 150},
    {"field": "events", "headerName": "Hours before an event", "minWidth": 150},
    {"field": "patients", "headerName": "Patients", "maxWidth": 120},
    {"field": "auroc", "headerName": "AUROC (95% CI)", "minWidth": 170,
     "cellClassRules": {"rc-cell-insufficient": "!params.data.measured"}},
    {"field": "auprc", "headerName": "AUPRC (95% CI)", "minWidth": 170,
     "cellClassRules": {"rc-cell-insufficient": "!params.data.measured"}},
]  # fmt: skip
DISCRIMINATION_COLUMNS = [
    {"field": "label", "headerName": "Score", "minWidth": 150},
    {"field": "auroc", "headerName": "AUROC (95% CI)", "minWidth": 140},
    {"field": "auprc", "headerName": "AUPRC (95% CI)", "minWidth": 140},
    {"field": "kind_text", "headerName": "What it is", "flex": 2, "minWidth": 180},
]
KIND_TEXT = {
    "model": "the model, calibrated risk",
    "baseline": "early-warning score, as charted",
    "ablation": "the model refitted on fewer features",
}
ABLATION_TEXT = {
    "clock only": "hours since admission alone",
    "physiology only": "without how often and how long ago things were measured",
}
STATUS_TEXT = {
    report_views.STATUS_NO_EVENTS: "not enough outcomes yet (no hour followed by an event)",
    report_views.STATUS_PENDING: "not enough outcomes yet (outcomes still pending)",
    report_views.STATUS_NO_NON_EVENTS: "not enough outcomes yet (every hour followed by an event)",
}


def _page_user() -> auth.DashboardUser | None:
    """The signed-in user when their role may read model reports (never a nurse), else None."""
    return auth.page_user(PAGE)


# ---------------------------------------------------------------------------- words


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _pct(value: float | None, *, digits: int = 0) -> str:
    if not _finite(value):
        return "–"
    assert value is not None
    percent = value * 100.0
    if 0 < percent < 1 and digits == 0:
        return f"{percent:.1f}%"
    return f"{percent:.{digits}f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}f}".replace("-", "−") if _finite(value) else "–"


def _with_ci(value: float | None, low: float | None, high: float | None, digits: int = 2) -> str:
    if not _finite(value):
        return "–"
    if not (_finite(low) and _finite(high)):
        return _num(value, digits)
    return f"{_num(value, digits)} ({_num(low, digits)}–{_num(high, digits)})"


def _risk_threshold(value: float | None) -> str:
    if not _finite(value):
        return "–"
    assert value is not None
    return f"{value * 100:.2g}%" if value < 0.01 else f"{value * 100:.1f}%"


def _missing_report(what: str, path: Any, command: str) -> html.P:
    return html.P([f"No {what} for this version ({path}): ", html.Code(command), " writes one."], className="rc-muted")


def _version_options(versions: pl.DataFrame) -> list[dict[str, str]]:
    return [
        {"label": f"{row['version']}{' · champion' if row['is_champion'] else ''}", "value": row["version"]}
        for row in versions.iter_rows(named=True)
    ]


# ---------------------------------------------------------------------------- layout


def layout(version: str | None = None, **_: Any) -> html.Div:
    """The page for the version in the URL (default: the champion, else the newest)."""
    if _page_user() is None:
        return not_allowed()
    context_ = context()
    versions = report_views.model_versions(context_.registry)
    if versions.height == 0:
        return html.Div(
            [html.Div(html.H1("Model"), className="rc-page-head"),
             notice("No model yet: run `riskcast train` to train and register one.")]
        )  # fmt: skip
    chosen = report_views.known_version(context_.registry, version)
    if version is not None and chosen is None:
        return notice("There is no model version with that name.", link=("Show the champion", "/model"))
    if chosen is None:
        champions = versions.filter(pl.col("is_champion"))
        chosen = str((champions if champions.height else versions)["version"][0])
    return html.Div(
        [
            html.Div(
                [
                    html.Div([html.H1("Model"), html.Div(id="model-summary", className="rc-muted")]),
                    dcc.Dropdown(id="model-version", options=_version_options(versions), value=chosen, clearable=False,
                                 searchable=False, className="rc-ward-select", style={"minWidth": "380px"}),
                ],
                className="rc-page-head",
            ),
            html.Div(
                [
                    html.Div([html.H2("Model card"), html.Div(id="model-card")], className="rc-card", style={"flex": "2 1 560px"}),
                    html.Div([html.H2("Operating point and its promise"), html.Div(id="model-promise")], className="rc-card",
                             style={"flex": "1 1 380px"}),
                ],
                className="rc-row",
            ),
            html.Div(
                [
                    html.H2("Threshold trade-off: sensitivity and PPV against alert burden"),
                    html.P("Held-out patients. Move along the curve to choose an alert budget: each point is a threshold "
                           "(hover for it). NEWS2 at 3, 5 and 7 and the model's current threshold are marked.",
                           className="rc-muted rc-small"),
                    dcc.Graph(id="model-tradeoff", config=GRAPH_CONFIG),
                    html.Div(id="model-tradeoff-note", className="rc-small"),
                ],
                className="rc-card",
            ),
            html.Div(
                [
                    html.Div(
                        [html.H2("Discrimination on held-out patients"),
                         dcc.Graph(id="model-discrimination", config=GRAPH_CONFIG),
                         grid("model-discrimination-table", columns=DISCRIMINATION_COLUMNS, row_id="score",
                              empty_text="No evaluation report.")],
                        className="rc-card", style={"flex": "3 1 620px"},
                    ),
                    html.Div(
                        [html.H2("Calibration: reliability curve"), dcc.Graph(id="model-reliability", config=GRAPH_CONFIG),
                         html.Div(id="model-reliability-note", className="rc-small rc-muted")],
                        className="rc-card", style={"flex": "2 1 420px"},
                    ),
                ],
                className="rc-row",
            ),
            html.Div(
                [
                    html.H2("AUROC and AUPRC by week, on the scores the model gave"),
                    html.Div(id="model-over-time-note", className="rc-muted rc-small"),
                    dcc.Graph(id="model-over-time", config=GRAPH_CONFIG),
                    grid("model-over-time-table", columns=OVER_TIME_COLUMNS, row_id="week",
                         empty_text="This version has no scores yet."),
                ],
                className="rc-card",
            ),
        ]
    )  # fmt: skip


# ---------------------------------------------------------------------------- figures


def _layout(figure: go.Figure, *, height: int) -> go.Figure:
    figure.update_layout(
        height=height, margin=dict(l=60, r=24, t=40, b=48), paper_bgcolor="white", plot_bgcolor="white", font=FONT,
        hovermode="closest", legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
    )  # fmt: skip
    figure.update_xaxes(showgrid=True, gridcolor="#eceef2", linecolor="#c5cad3", zeroline=False)
    figure.update_yaxes(showgrid=True, gridcolor="#eceef2", linecolor="#c5cad3", zeroline=False)
    return figure


def discrimination_figure(table: pl.DataFrame, *, prevalence: float | None) -> go.Figure:
    """AUROC and AUPRC of each score with their 95% intervals, the model on top."""
    if table.height == 0:
        return empty_figure("The evaluation report has no discrimination results.")
    rows = list(reversed(table.to_dicts()))
    labels = [r["label"] for r in rows]
    colours = [RISK_COLOUR if r["kind"] == "model" else ABLATION_COLOUR if r["kind"] == "ablation" else BASELINE_COLOUR
               for r in rows]  # fmt: skip
    symbols = ["circle" if r["kind"] != "ablation" else "diamond-open" for r in rows]
    figure = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04, subplot_titles=("AUROC", "AUPRC"))
    for column, metric in enumerate(("auroc", "auprc"), start=1):
        values = [r[metric] for r in rows]
        plus = [None if r[f"{metric}_high"] is None or r[metric] is None else r[f"{metric}_high"] - r[metric] for r in rows]
        minus = [None if r[f"{metric}_low"] is None or r[metric] is None else r[metric] - r[f"{metric}_low"] for r in rows]
        hover = [f"{r['label']}: {_with_ci(r[metric], r[f'{metric}_low'], r[f'{metric}_high'])}" for r in rows]
        figure.add_trace(
            go.Scatter(
                x=values, y=labels, mode="markers", showlegend=False, text=hover, hovertemplate="%{text}<extra></extra>",
                marker=dict(size=11, color=colours, symbol=symbols, line=dict(width=1.5, color=colours)),
                error_x=dict(type="data", array=plus, arrayminus=minus, visible=True, color="#9aa1ad", thickness=1.5, width=4),
            ),
            row=1, col=column,
        )  # fmt: skip
    figure.add_vline(x=0.5, line=dict(color="#c5cad3", dash="dot"), row=1, col=1)
    if _finite(prevalence):
        figure.add_vline(x=prevalence, line=dict(color="#c5cad3", dash="dot"), row=1, col=2,
                         annotation_text="no skill", annotation_position="top right",
                         annotation_font=dict(size=11, color=MUTED))  # fmt: skip
    _layout(figure, height=70 + 46 * len(rows))
    figure.update_layout(margin=dict(l=190, r=24, t=36, b=36))
    lowest = min([v for v in table["auroc_low"].to_list() + table["auroc"].to_list() if v is not None] + [0.5])
    figure.update_xaxes(range=[min(0.4, math.floor(lowest * 10) / 10), 1.0], row=1, col=1)
    figure.update_xaxes(rangemode="tozero", row=1, col=2)
    figure.update_annotations(font=dict(size=13, color=MUTED))
    return figure


def reliability_figure(reliability: pl.DataFrame) -> go.Figure:
    """Mean predicted risk against the observed event rate per risk bin (10 bins of equal
    size): on the diagonal, risk means what it says. Marker area follows the bin's hours."""
    points = reliability.drop_nulls(["mean_predicted", "observed_rate"])
    if points.height == 0:
        return empty_figure("The evaluation report has no reliability curve.")
    predicted = [v * 100 for v in points["mean_predicted"].to_list()]
    observed = [v * 100 for v in points["observed_rate"].to_list()]
    counts = [c or 0 for c in points["count"].to_list()]
    top = max(predicted + observed) * 1.08 or 1.0
    biggest = max(counts) or 1
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="Perfect calibration",
                                line=dict(color="#9aa1ad", dash="dash", width=1.2), hoverinfo="skip"))  # fmt: skip
    hover = [
        f"risk {_pct(lo, digits=2)}–{_pct(hi, digits=2)}<br>predicted {p:.2f}%, observed {o:.2f}%<br>{c:,} hours"
        for lo, hi, p, o, c in zip(points["min_predicted"].to_list(), points["max_predicted"].to_list(), predicted,
                                   observed, counts, strict=True)
    ]  # fmt: skip
    figure.add_trace(
        go.Scatter(
            x=predicted, y=observed, mode="lines+markers", name="Risk bins (held-out hours)",
            line=dict(color=RISK_COLOUR, width=2),
            marker=dict(size=[8 + 18 * math.sqrt(c / biggest) for c in counts], color=RISK_COLOUR, opacity=0.85,
                        line=dict(color="white", width=1)),
            text=hover, hovertemplate="%{text}<extra></extra>",
        )
    )  # fmt: skip
    _layout(figure, height=400)
    figure.update_xaxes(title_text="mean predicted risk (%)", range=[0, top], ticksuffix="%")
    figure.update_yaxes(title_text="observed event rate (%)", range=[0, top], ticksuffix="%", scaleanchor="x", scaleratio=1)
    return figure


def tradeoff_figure(tradeoff: report_views.ThresholdTradeoff) -> go.Figure:
    """Hourly sensitivity and PPV, and the share of events flagged within 48 h, against
    alert episodes per 100 patient-days; NEWS2 at 3/5/7 and the current threshold marked."""
    model = tradeoff.model.drop_nulls("alerts_per_100_patient_days")
    if model.height == 0:
        return empty_figure("The trade-off report has no thresholds.")
    figure = go.Figure()
    thresholds = [_risk_threshold(t) for t in model["threshold"].to_list()]
    x = model["alerts_per_100_patient_days"].to_list()
    lines = (
        ("sensitivity", "Sensitivity (hours)", RISK_COLOUR, "solid"),
        ("encounter_sensitivity", "Events flagged within 48 h", RISK_COLOUR, "dot"),
        ("ppv", "PPV (hours)", PPV_COLOUR, "solid"),
    )
    for column, name, colour, dash_style in lines:
        figure.add_trace(
            go.Scatter(
                x=x, y=[None if v is None else v * 100 for v in model[column].to_list()], mode="lines+markers", name=name,
                line=dict(color=colour, width=2.2 if dash_style == "solid" else 1.6, dash=dash_style, shape="linear"),
                marker=dict(size=5), text=thresholds,
                hovertemplate=f"risk ≥ %{{text}}<br>%{{x:.1f}} alerts per 100 patient-days<br>{name}: %{{y:.0f}}%<extra></extra>",
            )
        )  # fmt: skip
    news2 = tradeoff.news2.drop_nulls("alerts_per_100_patient_days")
    for row in news2.iter_rows(named=True):
        rate = row["alerts_per_100_patient_days"]
        figure.add_vline(x=rate, line=dict(color=NEWS2_COLOUR, width=1, dash="dot"), layer="below",
                         annotation_text=f"NEWS2 ≥{row['threshold']:.0f}", annotation_position="top",
                         annotation_font=dict(size=11, color=NEWS2_COLOUR))  # fmt: skip
    if news2.height:
        for column, name, symbol in (("sensitivity", "NEWS2 sensitivity", "x"), ("ppv", "NEWS2 PPV", "x-open")):
            figure.add_trace(
                go.Scatter(
                    x=news2["alerts_per_100_patient_days"].to_list(),
                    y=[None if v is None else v * 100 for v in news2[column].to_list()], mode="markers", name=name,
                    marker=dict(symbol=symbol, size=12, color=NEWS2_COLOUR, line=dict(width=2, color=NEWS2_COLOUR)),
                    text=[f"NEWS2 ≥{t:.0f}" for t in news2["threshold"].to_list()],
                    hovertemplate=f"%{{text}}<br>%{{x:.1f}} alerts per 100 patient-days<br>{name}: %{{y:.0f}}%<extra></extra>",
                )
            )  # fmt: skip
    current = tradeoff.current
    if current is not None and _finite(current.alerts_per_100_patient_days):
        figure.add_vline(x=current.alerts_per_100_patient_days, line=dict(color=RISK_COLOUR, width=2), layer="below")
        figure.add_trace(
            go.Scatter(
                x=[current.alerts_per_100_patient_days] * 2,
                y=[None if v is None else v * 100 for v in (current.sensitivity, current.ppv)],
                mode="markers", name=f"Now: risk ≥ {_risk_threshold(current.threshold)}", text=["sensitivity", "PPV"],
                marker=dict(symbol="star", size=17, color="#e8a33d", line=dict(color=RISK_COLOUR, width=1.5)),
                hovertemplate="current threshold<br>%{x:.1f} alerts per 100 patient-days<br>%{text}: %{y:.0f}%<extra></extra>",
            )
        )  # fmt: skip
    _layout(figure, height=430)
    figure.update_layout(margin=dict(l=60, r=24, t=60, b=48), legend=dict(y=1.1))
    figure.update_xaxes(title_text="alert episodes per 100 patient-days", rangemode="tozero")
    figure.update_yaxes(title_text="%", range=[0, 102], ticksuffix="%")
    return figure


def over_time_figure(performance: pl.DataFrame) -> go.Figure:
    """Weekly AUROC and AUPRC with their intervals; weeks without enough outcomes are
    marked as such, with no point."""
    if performance.height == 0:
        return empty_figure("This version has no scores yet, so there is nothing to follow over time.")
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=("AUROC by week", "AUPRC by week"))
    weeks = performance["week_start"].to_list()
    tops: list[float] = []
    for column, metric in enumerate(("auroc", "auprc"), start=1):
        values = performance[metric].to_list()
        plus = [None if v is None or h is None else h - v for v, h in zip(values, performance[f"{metric}_high"].to_list(), strict=True)]
        minus = [None if v is None or lo is None else v - lo for v, lo in zip(values, performance[f"{metric}_low"].to_list(), strict=True)]
        figure.add_trace(
            go.Scatter(
                x=weeks, y=values, mode="lines+markers", showlegend=False, connectgaps=False,
                line=dict(color=RISK_COLOUR, width=2), marker=dict(size=9, color=RISK_COLOUR),
                error_y=dict(type="data", array=plus, arrayminus=minus, visible=True, color="#9aa1ad", thickness=1.5),
                hovertemplate="week from %{x|%d %b}<br>" + metric.upper() + " %{y:.2f}<extra></extra>",
            ),
            row=1, col=column,
        )  # fmt: skip
        highs = [h for h in performance[f"{metric}_high"].to_list() + values if h is not None]
        top = 1.0 if metric == "auroc" or not highs else min(1.0, max(highs) * 1.15)
        tops.append(top)
        pending = performance.filter(pl.col("status") != report_views.STATUS_MEASURED)
        if pending.height:
            middle = 0.7 if metric == "auroc" else top / 2
            figure.add_trace(
                go.Scatter(
                    x=pending["week_start"].to_list(), y=[middle] * pending.height,
                    mode="markers+text", showlegend=False, text=["not enough outcomes yet"] * pending.height,
                    textposition="top center", textfont=dict(size=11, color=MUTED),
                    marker=dict(symbol="line-ew-open", size=16, color=MUTED), hoverinfo="skip",
                ),
                row=1, col=column,
            )  # fmt: skip
    _layout(figure, height=330)
    lowest = min([v for v in performance["auroc_low"].to_list() + performance["auroc"].to_list() if v is not None] + [0.5])
    figure.update_yaxes(range=[min(0.4, math.floor(lowest * 10) / 10), 1.0], row=1, col=1)
    figure.update_yaxes(range=[0, tops[1]], row=1, col=2)
    figure.update_xaxes(tickformat="%d %b", dtick=7 * 24 * 3600 * 1000)
    figure.update_annotations(font=dict(size=13, color=MUTED))
    return figure


# ---------------------------------------------------------------------------- blocks


def _card_block(card: report_views.ModelCard | None, *, is_champion: bool) -> list:
    if card is None:
        return [html.P("This version has no model card (model_card.json).", className="rc-muted")]
    data = card.data
    outcome = f"{card.outcome or 'outcome not stated'} within {card.horizon_hours:g} h" if card.horizon_hours else (card.outcome or "not stated")
    facts = [
        ("Version", f"{card.version}{' (champion)' if is_champion else ''}"),
        ("Predicts", outcome),
        ("Engine", f"{card.engine or '–'}, {card.calibration or 'no'} calibration, {card.n_features or '–'} features"),
        ("Alerts at", f"risk ≥ {_risk_threshold(card.threshold)}"
                      + (f" ({card.threshold_rule.replace('_', ' ')} {card.threshold_target:g})"
                         if card.threshold_rule and card.threshold_target is not None else "")),
    ]  # fmt: skip
    rows, patients, held_out = data.get("rows"), data.get("patients"), data.get("test_patients")
    if isinstance(rows, int) and isinstance(patients, int):
        split = data.get("split", "")
        facts.append(("Data", f"{rows:,} hours of {patients:,} patients; {held_out if isinstance(held_out, int) else '–'} "
                              f"held out{f' ({split})' if split else ''}"))  # fmt: skip
    fingerprint = card.fingerprint
    if isinstance(fingerprint.get("rows"), int):
        facts.append(("Trained on", f"{fingerprint['rows']:,} hours, {fingerprint.get('patients', 0):,} patients, "
                                    f"{fingerprint.get('positives', 0):,} hours before an event"))  # fmt: skip
    block: list = [
        html.Div(
            [html.Div([html.Div(label, className="rc-stat-label"), html.Div(value)]) for label, value in facts],
            style={"display": "grid", "gridTemplateColumns": "repeat(auto-fit, minmax(220px, 1fr))", "gap": "0.6rem 1.4rem",
                   "marginBottom": "0.8rem"},
        ),
        html.H3("Intended use"),
        html.P(card.intended_use, id="model-card-intended-use"),
    ]  # fmt: skip
    if card.top_variables.height:
        block += [
            html.H3("What it leans on most (mean |SHAP|, held-out hours)"),
            html.P(", ".join(card.top_variables["label"].to_list())),
        ]
    block += [
        html.H3("Limits"),
        html.Ul([html.Li(limit) for limit in card.limits] or [html.Li("none stated")], className="rc-drivers"),
    ]
    if card.markdown:
        block.append(
            html.Details(
                [html.Summary("The full model card (model_card.md)"),
                 dcc.Markdown(card.markdown, className="rc-small", style={"maxHeight": "420px", "overflowY": "auto"})],
                style={"marginTop": "0.6rem"},
            )
        )  # fmt: skip
    return block


def _promise_block(evaluation: report_views.EvaluationSummary | None, path: Any) -> list:
    if evaluation is None:
        return [_missing_report("evaluation report", path, "riskcast train")]
    point, check = evaluation.operating_point, evaluation.promise_check
    block: list = []
    if point is not None:
        block += [
            html.Div(
                [
                    html.Div([html.Div("Alerts per 100 patient-days", className="rc-stat-label"),
                              html.Div(_num(point.alerts_per_100_patient_days, 1), className="rc-stat-value")]),
                    html.Div([html.Div("Sensitivity (hours)", className="rc-stat-label"),
                              html.Div(_pct(point.sensitivity), className="rc-stat-value")]),
                    html.Div([html.Div("PPV (hours)", className="rc-stat-label"),
                              html.Div(_pct(point.ppv), className="rc-stat-value")]),
                    html.Div([html.Div("Events flagged ≤48 h before", className="rc-stat-label"),
                              html.Div(_pct(point.encounter_sensitivity), className="rc-stat-value")]),
                ],
                className="rc-stats", style={"marginBottom": "0.8rem"},
            ),
            html.P(f"At risk ≥ {_risk_threshold(point.threshold)} on {evaluation.n_patients or 0:,} held-out patients"
                   + (f"; median warning {point.median_lead_time_hours:.0f} h before the event."
                      if _finite(point.median_lead_time_hours) else "."), className="rc-muted rc-small"),
        ]  # fmt: skip
    if check is None:
        block.append(html.P("This report has no promise check (trained before promises were recorded).", className="rc-muted"))
        return block
    kept = check.kept
    verdict = "Promise kept" if kept else ("Promise broken" if kept is False else "Promise not checked")
    block += [
        html.Div(
            [html.Span(verdict, id="model-promise-verdict",
                       className="rc-pill " + ("rc-pill-resolved" if kept else "rc-pill-new" if kept is False else "rc-pill-snoozed")),
             html.Span(f" made on the calibration patients: {check.promise or ''}", className="rc-small")],
            style={"margin": "0.4rem 0 0.6rem"},
        ),
        html.Table(
            [
                html.Thead(html.Tr([html.Th(""), html.Th("promised"), html.Th("held-out"), html.Th("")])),
                html.Tbody(
                    [
                        html.Tr([html.Td("alerts per 100 patient-days"), html.Td(_num(check.promised_alerts_per_100_patient_days, 1)),
                                 html.Td(_num(check.observed_alerts_per_100_patient_days, 1)),
                                 html.Td("kept" if check.burden_kept else "more alerts than promised" if check.burden_kept is False else "")]),
                        html.Tr([html.Td("PPV (hours)"), html.Td(_pct(check.promised_ppv)), html.Td(_pct(check.observed_ppv)),
                                 html.Td("kept" if check.ppv_kept else "lower than promised" if check.ppv_kept is False else "")]),
                    ]
                ),
            ],
            className="rc-small", style={"width": "100%", "textAlign": "left"},
        ),
    ]  # fmt: skip
    return block


def _comparison_text(evaluation: report_views.EvaluationSummary | None) -> list:
    if evaluation is None or evaluation.comparisons.height == 0:
        return []
    items = []
    for row in evaluation.comparisons.iter_rows(named=True):
        items.append(
            html.Li(
                f"At {row['baseline']} ≥ {row['baseline_threshold']:g}'s burden "
                f"({_num(row['baseline_alerts_per_100_patient_days'], 1)} alerts per 100 patient-days): "
                f"{row['baseline']} sensitivity {_pct(row['baseline_sensitivity'])}, PPV {_pct(row['baseline_ppv'])}; "
                f"the model {_pct(row['model_sensitivity'])}, PPV {_pct(row['model_ppv'])}."
            )
        )
    return [html.Ul(items, className="rc-drivers", style={"marginTop": "0.4rem"})]


# ---------------------------------------------------------------------------- callbacks


@callback(
    Output("model-summary", "children"),
    Output("model-card", "children"),
    Output("model-promise", "children"),
    Output("model-tradeoff", "figure"),
    Output("model-tradeoff-note", "children"),
    Output("model-discrimination", "figure"),
    Output("model-discrimination-table", "rowData"),
    Output("model-reliability", "figure"),
    Output("model-reliability-note", "children"),
    Input("model-version", "value"),
)
def show_reports(version: str | None) -> tuple:
    """Draw the card and the held-out reports of the chosen version."""
    if _page_user() is None:
        raise PreventUpdate
    context_ = context()
    chosen = report_views.known_version(context_.registry, version)
    if chosen is None:
        raise PreventUpdate
    reports_dir = context_.settings.reports_dir
    problems: list[str] = []
    try:
        card = report_views.model_card(context_.registry, chosen, catalog=context_.catalog)
    except RiskcastError as exc:
        card, problems = None, [*problems, str(exc)]
    try:
        evaluation = report_views.evaluation_report(reports_dir, chosen)
    except RiskcastError as exc:
        evaluation, problems = None, [*problems, str(exc)]
    try:
        tradeoff = report_views.threshold_tradeoff(reports_dir, chosen, evaluation=evaluation)
    except RiskcastError as exc:
        tradeoff, problems = None, [*problems, str(exc)]
    is_champion = chosen == context_.model().version
    summary = f"{chosen}{' · champion' if is_champion else ' · not the champion'}"
    if evaluation is not None:
        summary += (f" · held out: {evaluation.n_patients or 0:,} patients, {evaluation.n_rows or 0:,} hours, "
                    f"{evaluation.n_positive or 0:,} hours before an event ({_pct(evaluation.prevalence, digits=1)})")  # fmt: skip
    if problems:
        summary = [summary, *[html.Div(p, className="rc-message-error") for p in problems]]
    evaluation_file = report_views.evaluation_path(reports_dir, chosen)
    if tradeoff is None:
        tradeoff_chart = empty_figure("No threshold trade-off for this version: `riskcast train` writes one.", height=300)
        tradeoff_note: list = [_missing_report("threshold trade-off", report_views.tradeoff_path(reports_dir, chosen), "riskcast train")]
    else:
        tradeoff_chart, tradeoff_note = tradeoff_figure(tradeoff), _comparison_text(evaluation)
    if evaluation is None:
        missing = "No evaluation report for this version: `riskcast train` writes one."
        discrimination_chart, reliability_chart = empty_figure(missing), empty_figure(missing)
        discrimination_rows: list[dict[str, Any]] = []
        reliability_note: Any = _missing_report("evaluation report", evaluation_file, "riskcast train")
    else:
        discrimination_chart = discrimination_figure(evaluation.discrimination, prevalence=evaluation.prevalence)
        discrimination_rows = [
            {"score": r["score"], "label": r["label"], "kind": r["kind"],
             "auroc": _with_ci(r["auroc"], r["auroc_low"], r["auroc_high"]),
             "auprc": _with_ci(r["auprc"], r["auprc_low"], r["auprc_high"]),
             "kind_text": ABLATION_TEXT.get(r["score"], KIND_TEXT.get(r["kind"], ""))}
            for r in evaluation.discrimination.iter_rows(named=True)
        ]  # fmt: skip
        reliability_chart = reliability_figure(evaluation.reliability)
        reliability_note = (
            f"Brier {_num(evaluation.brier, 4)} · expected calibration error {_num(evaluation.ece, 4)} · "
            f"mean predicted minus observed {_pct(evaluation.calibration_in_the_large, digits=2)} "
            f"({'over' if (evaluation.calibration_in_the_large or 0) > 0 else 'under'}-predicts on average). "
            "Bins hold equal numbers of held-out hours."
        )
    return (
        summary,
        _card_block(card, is_champion=is_champion),
        _promise_block(evaluation, evaluation_file),
        tradeoff_chart,
        tradeoff_note,
        discrimination_chart,
        discrimination_rows,
        reliability_chart,
        reliability_note,
    )


@callback(
    Output("model-over-time", "figure"),
    Output("model-over-time-table", "rowData"),
    Output("model-over-time-note", "children"),
    Input("model-version", "value"),
)
def show_over_time(version: str | None) -> tuple:
    """Weekly AUROC and AUPRC of the chosen version's scores, against the outcomes known now."""
    if _page_user() is None:
        raise PreventUpdate
    context_ = context()
    chosen = report_views.known_version(context_.registry, version)
    if chosen is None:
        raise PreventUpdate
    now = context_.clock()
    performance = report_views.performance_over_time(context_.engine, context_.lake, context_.registry,
                                                     model_version=chosen, now=now)  # fmt: skip
    rows = []
    for r in performance.iter_rows(named=True):
        measured = r["status"] == report_views.STATUS_MEASURED
        waiting = STATUS_TEXT.get(r["status"], "not enough outcomes yet")
        rows.append(
            {
                "week": f"{r['week_start']:%a %d %b %Y}",
                "scored": f"{r['n_scored']:,}",
                "labelled": f"{r['n_labelled']:,}" + (f" ({r['n_pending']:,} pending)" if r["n_pending"] else ""),
                "events": f"{r['n_positive']:,}",
                "patients": f"{r['n_patients']:,}",
                "measured": measured,
                "auroc": _with_ci(r["auroc"], r["auroc_low"], r["auroc_high"]) if measured else waiting,
                "auprc": _with_ci(r["auprc"], r["auprc_low"], r["auprc_high"]) if measured else waiting,
            }
        )
    note = (
        f"Each hour the model scored, labelled as in training (an event within the model's horizon after it), using "
        f"only outcomes known now; hours of patients still in hospital whose horizon has not passed are pending. "
        f"Weeks start on Monday 00:00 UTC; 95% patient-bootstrap intervals. These are the "
        f"patients the model really scored, which may include patients it was trained on."
    )
    return over_time_figure(performance), rows, note
