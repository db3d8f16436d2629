"""The model, for data scientists and clinical leads: its card, how well it ranks and how
well its risks are calibrated on held-out patients, against NEWS2, qSOFA, SIRS and the
ablations, whether its operating point kept its promise, how its AUROC and AUPRC moved
week by week on the patients it really scored, and the trade-off between sensitivity,
PPV and alert burden, so the alert budget can be chosen by looking.

`/model` shows the champion; `/model/<version>` (or the picker) any registered version.
Everything is read through riskcast.read_models; nurses cannot open this page.
"""

from __future__ import annotations

from typing import Any

import dash
import polars as pl
from dash import Input, Output, callback, dcc, html
from dash.exceptions import PreventUpdate

from riskcast import read_models
from riskcast.dashboards import auth
from riskcast.dashboards.components.figures import GRAPH_CONFIG, empty_figure
from riskcast.dashboards.components.grids import grid
from riskcast.dashboards.components.notices import not_allowed, notice
from riskcast.dashboards.components.report_figures import (
    discrimination_figure,
    over_time_figure,
    reliability_figure,
    tradeoff_figure,
)
from riskcast.dashboards.components.report_text import finite, interval_text, number_text, percent_text, threshold_text
from riskcast.dashboards.components.text import ago_text, clock_text
from riskcast.dashboards.context import context
from riskcast.errors import RiskcastError

PAGE = "model"
"""Who may read model reports while auth.ROLE_PAGES does not list this page yet."""

dash.register_page(
    __name__, path="/model", path_template="/model/<version>", name="Model", title="Model · riskcast", order=3,
    nav=True, riskcast_page=PAGE,
)  # fmt: skip


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
NOT_COMPUTED_TEXT = (
    "Weekly performance is computed by the nightly job, and it has not computed this version's yet "
    "(or the version has no scores in the last weeks)."
)
STATUS_TEXT = {
    read_models.STATUS_NO_EVENTS: "not enough outcomes yet (no hour followed by an event)",
    read_models.STATUS_PENDING: "not enough outcomes yet (outcomes still pending)",
    read_models.STATUS_NO_NON_EVENTS: "not enough outcomes yet (every hour followed by an event)",
}


def _page_user() -> auth.DashboardUser | None:
    """The signed-in user when their role may read model reports (never a nurse), else None."""
    return auth.page_user(PAGE)


# ---------------------------------------------------------------------------- words


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
    versions = read_models.model_versions(context_.registry)
    if versions.height == 0:
        return html.Div(
            [html.Div(html.H1("Model"), className="rc-page-head"),
             notice("No model yet: run `riskcast train` to train and register one.")]
        )  # fmt: skip
    chosen = read_models.known_version(context_.registry, version)
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


# ---------------------------------------------------------------------------- blocks


def _card_block(card: read_models.ModelCard | None, *, is_champion: bool) -> list:
    if card is None:
        return [html.P("This version has no model card (model_card.json).", className="rc-muted")]
    data = card.data
    outcome = f"{card.outcome or 'outcome not stated'} within {card.horizon_hours:g} h" if card.horizon_hours else (card.outcome or "not stated")
    facts = [
        ("Version", f"{card.version}{' (champion)' if is_champion else ''}"),
        ("Predicts", outcome),
        ("Engine", f"{card.engine or '–'}, {card.calibration or 'no'} calibration, {card.n_features or '–'} features"),
        ("Alerts at", f"risk ≥ {threshold_text(card.threshold)}"
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


def _promise_block(evaluation: read_models.EvaluationSummary | None, path: Any) -> list:
    if evaluation is None:
        return [_missing_report("evaluation report", path, "riskcast train")]
    point, check = evaluation.operating_point, evaluation.promise_check
    block: list = []
    if point is not None:
        block += [
            html.Div(
                [
                    html.Div([html.Div("Alerts per 100 patient-days", className="rc-stat-label"),
                              html.Div(number_text(point.alerts_per_100_patient_days, 1), className="rc-stat-value")]),
                    html.Div([html.Div("Sensitivity (hours)", className="rc-stat-label"),
                              html.Div(percent_text(point.sensitivity), className="rc-stat-value")]),
                    html.Div([html.Div("PPV (hours)", className="rc-stat-label"),
                              html.Div(percent_text(point.ppv), className="rc-stat-value")]),
                    html.Div([html.Div("Events flagged ≤48 h before", className="rc-stat-label"),
                              html.Div(percent_text(point.encounter_sensitivity), className="rc-stat-value")]),
                ],
                className="rc-stats", style={"marginBottom": "0.8rem"},
            ),
            html.P(f"At risk ≥ {threshold_text(point.threshold)} on {evaluation.n_patients or 0:,} held-out patients"
                   + (f"; median warning {point.median_lead_time_hours:.0f} h before the event."
                      if finite(point.median_lead_time_hours) else "."), className="rc-muted rc-small"),
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
                        html.Tr([html.Td("alerts per 100 patient-days"), html.Td(number_text(check.promised_alerts_per_100_patient_days, 1)),
                                 html.Td(number_text(check.observed_alerts_per_100_patient_days, 1)),
                                 html.Td("kept" if check.burden_kept else "more alerts than promised" if check.burden_kept is False else "")]),
                        html.Tr([html.Td("PPV (hours)"), html.Td(percent_text(check.promised_ppv)), html.Td(percent_text(check.observed_ppv)),
                                 html.Td("kept" if check.ppv_kept else "lower than promised" if check.ppv_kept is False else "")]),
                    ]
                ),
            ],
            className="rc-small", style={"width": "100%", "textAlign": "left"},
        ),
    ]  # fmt: skip
    return block


def _comparison_text(evaluation: read_models.EvaluationSummary | None) -> list:
    if evaluation is None or evaluation.comparisons.height == 0:
        return []
    items = []
    for row in evaluation.comparisons.iter_rows(named=True):
        items.append(
            html.Li(
                f"At {row['baseline']} ≥ {row['baseline_threshold']:g}'s burden "
                f"({number_text(row['baseline_alerts_per_100_patient_days'], 1)} alerts per 100 patient-days): "
                f"{row['baseline']} sensitivity {percent_text(row['baseline_sensitivity'])}, PPV {percent_text(row['baseline_ppv'])}; "
                f"the model {percent_text(row['model_sensitivity'])}, PPV {percent_text(row['model_ppv'])}."
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
    chosen = read_models.known_version(context_.registry, version)
    if chosen is None:
        raise PreventUpdate
    reports = context_.reports
    problems: list[str] = []
    try:
        card = read_models.model_card(context_.registry, chosen, catalog=context_.catalog)
    except RiskcastError as exc:
        card, problems = None, [*problems, str(exc)]
    try:
        evaluation = read_models.evaluation_report(reports, chosen)
    except RiskcastError as exc:
        evaluation, problems = None, [*problems, str(exc)]
    try:
        tradeoff = read_models.threshold_tradeoff(reports, chosen, evaluation=evaluation)
    except RiskcastError as exc:
        tradeoff, problems = None, [*problems, str(exc)]
    is_champion = chosen == context_.model().version
    summary = f"{chosen}{' · champion' if is_champion else ' · not the champion'}"
    if evaluation is not None:
        summary += (f" · held out: {evaluation.n_patients or 0:,} patients, {evaluation.n_rows or 0:,} hours, "
                    f"{evaluation.n_positive or 0:,} hours before an event ({percent_text(evaluation.prevalence, digits=1)})")  # fmt: skip
    if problems:
        summary = [summary, *[html.Div(p, className="rc-message-error") for p in problems]]
    evaluation_file = reports.model_card_path(chosen)
    if tradeoff is None:
        tradeoff_chart = empty_figure("No threshold trade-off for this version: `riskcast train` writes one.", height=300)
        tradeoff_note: list = [_missing_report("threshold trade-off", reports.tradeoff_path(chosen), "riskcast train")]
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
             "auroc": interval_text(r["auroc"], r["auroc_low"], r["auroc_high"]),
             "auprc": interval_text(r["auprc"], r["auprc_low"], r["auprc_high"]),
             "kind_text": ABLATION_TEXT.get(r["score"], KIND_TEXT.get(r["kind"], ""))}
            for r in evaluation.discrimination.iter_rows(named=True)
        ]  # fmt: skip
        reliability_chart = reliability_figure(evaluation.reliability)
        reliability_note = (
            f"Brier {number_text(evaluation.brier, 4)} · expected calibration error {number_text(evaluation.ece, 4)} · "
            f"mean predicted minus observed {percent_text(evaluation.calibration_in_the_large, digits=2)} "
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
    """Weekly AUROC and AUPRC of the chosen version's scores, as the nightly job computed and
    stored them (against the outcomes known then): read, never computed here."""
    if _page_user() is None:
        raise PreventUpdate
    context_ = context()
    chosen = read_models.known_version(context_.registry, version)
    if chosen is None:
        raise PreventUpdate
    stored = read_models.stored_performance(context_.engine, chosen)
    performance = stored.weeks
    if stored.computed_at is None:
        return over_time_figure(performance, empty_text=NOT_COMPUTED_TEXT), [], NOT_COMPUTED_TEXT
    now = context_.clock()
    computed = f"{clock_text(stored.computed_at, context_.zone, now=now)}, {ago_text(stored.computed_at, now)}"
    rows = []
    for r in performance.iter_rows(named=True):
        measured = r["status"] == read_models.STATUS_MEASURED
        waiting = STATUS_TEXT.get(r["status"], "not enough outcomes yet")
        rows.append(
            {
                "week": f"{r['week_start']:%a %d %b %Y}",
                "scored": f"{r['n_scored']:,}",
                "labelled": f"{r['n_labelled']:,}" + (f" ({r['n_pending']:,} pending)" if r["n_pending"] else ""),
                "events": f"{r['n_positive']:,}",
                "patients": f"{r['n_patients']:,}",
                "measured": measured,
                "auroc": interval_text(r["auroc"], r["auroc_low"], r["auroc_high"]) if measured else waiting,
                "auprc": interval_text(r["auprc"], r["auprc_low"], r["auprc_high"]) if measured else waiting,
            }
        )
    note = (
        f"Each hour the model scored, labelled as in training (an event within the model's horizon after it), using "
        f"only outcomes known when the nightly job computed these weeks ({computed}); hours of "
        f"patients still in hospital whose horizon had not passed are pending. "
        f"Weeks start on Monday 00:00 UTC; 95% patient-bootstrap intervals. These are the "
        f"patients the model really scored, which may include patients it was trained on."
    )
    return over_time_figure(performance), rows, note
