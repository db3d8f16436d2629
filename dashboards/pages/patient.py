"""One patient: risk over time with the alert thresholds and alert events, what drives the
risk now and what changed since 24 h ago, vitals and labs, and the alert history (who did
what, when, why), with the alert actions. Refreshed every REFRESH_SECONDS.

The encounter id comes from the URL (and, for callbacks, from the page's store, which the
browser could change), so every layout and callback checks that the encounter is on one
of the user's wards; the answer for "not yours" and "no such patient" is the same.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import dash
import polars as pl
from dash import Input, Output, State, callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from riskcast import read_models
from riskcast.alerts.state import alert_history
from riskcast.dashboards import auth
from riskcast.dashboards.actions import act_on_alert, valid_alert_id
from riskcast.dashboards.components import alert_actions
from riskcast.dashboards.components.figures import GRAPH_CONFIG, risk_figure, vitals_figure
from riskcast.dashboards.components.grids import grid
from riskcast.dashboards.components.notices import not_allowed, patient_not_found
from riskcast.dashboards.components.shell import ROLE_NAMES
from riskcast.dashboards.components.text import (
    ACTION_LABELS,
    INSUFFICIENT_LABEL,
    KIND_LABELS,
    STATE_LABELS,
    TREND_WORDS,
    change_text,
    clock_text,
    risk_text,
    value_text,
)
from riskcast.dashboards.context import DashboardContext, context
from riskcast.score_status import ScoreStatus

PAGE = "patient"
REFRESH_SECONDS = 30
CHART_HOURS = 72.0
VITALS_HOURS = 48.0
CHANGE_HOURS = 24.0

dash.register_page(
    __name__, path_template="/patient/<encounter_id>", name="Patient", title="Patient · riskcast", order=1, nav=False,
    riskcast_page=PAGE,
)  # fmt: skip

LAB_COLUMNS = [
    {"field": "label", "headerName": "Lab", "flex": 2, "minWidth": 130},
    {"field": "last", "headerName": "Latest", "flex": 1, "minWidth": 90},
    {"field": "previous", "headerName": "Before", "flex": 1, "minWidth": 90},
    {"field": "when", "headerName": "Taken", "flex": 1, "minWidth": 80},
]
HISTORY_COLUMNS = [
    {"field": "when", "headerName": "When", "minWidth": 120, "maxWidth": 150},
    {"field": "alert", "headerName": "Alert", "minWidth": 130, "maxWidth": 170},
    {"field": "action", "headerName": "What", "minWidth": 150},
    {"field": "change", "headerName": "State", "minWidth": 180},
    {"field": "who", "headerName": "Who", "minWidth": 150},
    {"field": "reason", "headerName": "Reason", "flex": 2, "minWidth": 200},
]


def _visible_header(context_: DashboardContext, user: auth.DashboardUser, encounter_id: Any) -> read_models.PatientHeader | None:
    """The encounter's header when it exists and is on the user's wards, else None."""
    if not isinstance(encounter_id, str) or not encounter_id or len(encounter_id) > 200:
        return None
    header = read_models.patient_header(context_.engine, encounter_id, model_version=context_.model().version,
                                  catalog=context_.catalog)  # fmt: skip
    if header is None or not user.may_see_ward(header.ward):
        return None
    return header


def layout(encounter_id: str | None = None, **_: Any) -> html.Div:
    """The page for one encounter on the user's wards (nothing about anyone else)."""
    user = auth.page_user(PAGE)
    if user is None:
        return not_allowed()
    context_ = context()
    # The ward board percent-encodes the id in its link (ids may hold '/', '?', '#').
    header = _visible_header(context_, user, unquote(encounter_id) if isinstance(encounter_id, str) else None)
    if header is None:
        return patient_not_found()
    policy = context_.policy_set.for_ward(header.ward)
    return html.Div(
        [
            dcc.Store(id="patient-encounter", data=header.encounter_id),
            html.Div(
                [
                    html.Div([dcc.Link("← Ward", href="/", className="rc-small"), html.H1(f"Patient {header.encounter_id}")]),
                ],
                className="rc-page-head",
            ),
            html.Div(id="patient-header", className="rc-card"),
            html.Div(
                [
                    html.Div(
                        [html.H2("Risk over time"), dcc.Graph(id="patient-risk", config=GRAPH_CONFIG)],
                        className="rc-card",
                        style={"flex": "2 1 560px"},
                    ),
                    html.Div(
                        [
                            dcc.Dropdown(id="patient-alert", options=[], value=None, clearable=False, searchable=False,
                                         placeholder="No open alert", style={"display": "none"}),
                            alert_actions.action_panel(
                                PAGE, may_act=user.may_act, max_snooze_hours=policy.max_snooze_hours,
                                role_name=ROLE_NAMES.get(user.role, user.role),
                            ),
                        ],
                        style={"flex": "1 1 360px"},
                    ),
                ],
                className="rc-row",
            ),
            html.Div(id="patient-drivers", className="rc-row"),
            html.Div(
                [
                    html.Div([html.H2(f"Vitals, last {VITALS_HOURS:.0f} h"), dcc.Graph(id="patient-vitals", config=GRAPH_CONFIG)],
                             className="rc-card", style={"flex": "2 1 560px"}),
                    html.Div([html.H2(f"Labs, last {VITALS_HOURS:.0f} h"),
                              grid("patient-labs", columns=LAB_COLUMNS, row_id="variable", empty_text="No labs in this window.")],
                             className="rc-card", style={"flex": "1 1 380px"}),
                ],
                className="rc-row",
            ),
            html.Div(
                [html.H2("Alert history"),
                 grid("patient-history", columns=HISTORY_COLUMNS, row_id="event_id", empty_text="No alerts for this stay.")],
                className="rc-card",
            ),
            dcc.Store(id="patient-action-done", data=0),
            dcc.Interval(id="patient-interval", interval=REFRESH_SECONDS * 1000),
        ]
    )  # fmt: skip


def _header_block(header: read_models.PatientHeader, alerts: pl.DataFrame, context_: DashboardContext, now: Any) -> list:
    zone = context_.zone
    insufficient = header.status == ScoreStatus.INSUFFICIENT_DATA
    risk_class = "rc-risk-big rc-cell-insufficient" if insufficient else "rc-risk-big"
    trend = "no earlier score to compare" if header.trend is None else (
        f"{TREND_WORDS[header.trend]} ({change_text((header.risk or 0) - (header.previous_risk or 0))} since the previous hour)"
    )  # fmt: skip
    if insufficient:
        trend = f"Missing or overdue: {', '.join(header.missing) or 'essential vitals'}"
    alert_text = "No open alert"
    if alerts.height:
        first = alerts.row(0, named=True)
        alert_text = f"{KIND_LABELS.get(first['kind'], first['kind'])}: {STATE_LABELS.get(first['state'], first['state'])}"
    stats = [
        ("Risk now", html.Div(risk_text(header.risk, header.status), className=risk_class, id="patient-risk-now")),
        ("Trend", html.Div(trend)),
        ("Alert", html.Div(alert_text, id="patient-alert-state")),
        ("Ward", html.Div(header.ward or "")),
        ("Scored for", html.Div(clock_text(header.scored_at, zone, now=now))),
    ]
    block = [
        html.Div(
            [html.Div([html.Div(label, className="rc-stat-label"), value]) for label, value in stats],
            className="rc-patient-head",
        )
    ]
    if not header.admitted:
        block.append(html.P("This stay has no score in the latest run (discharged or moved): showing its last state.",
                            className="rc-muted"))  # fmt: skip
    return block


def _drivers_block(comparison: read_models.DriverComparison, context_: DashboardContext, now: Any) -> list:
    zone = context_.zone

    def listing(frame: pl.DataFrame, empty: str) -> html.Ul | html.P:
        if frame.height == 0:
            return html.P(empty, className="rc-muted")
        return html.Ul([html.Li(text) for text in frame["text"].to_list()], className="rc-drivers")

    now_risk = risk_text(comparison.risk_now, comparison.status_now)
    now_title = f"Drivers now ({clock_text(comparison.now_at, zone, now=now)}, risk {now_risk})"
    if comparison.then_at is None:
        then_children: list = [
            html.H2(f"{CHANGE_HOURS:.0f} h ago"),
            html.P("No score that long ago (admitted since).", className="rc-muted"),
        ]
    else:
        then_title = (
            f"{CHANGE_HOURS:.0f} h ago ({clock_text(comparison.then_at, zone, now=now)}, "
            f"risk {risk_text(comparison.risk_then, comparison.status_then)})"
        )
        changes = [
            html.Li([html.Span(change.capitalize(), className=f"rc-change rc-change-{change}"), _change_words(*row)])
            for *row, change in comparison.changes.select("label", "now_text", "then_text", "change").iter_rows()
        ]
        then_children = [
            html.H2(then_title),
            listing(comparison.then, "No strong drivers then."),
            html.H3("What changed", style={"marginTop": "0.8rem"}),
            html.Ul(changes, className="rc-drivers") if changes else html.P("The same drivers.", className="rc-muted"),
        ]
    empty_now = f"{INSUFFICIENT_LABEL}: no drivers." if comparison.status_now == ScoreStatus.INSUFFICIENT_DATA else "No strong drivers."
    return [
        html.Div([html.H2(now_title), listing(comparison.now, empty_now)], className="rc-card", id="patient-drivers-now"),
        html.Div(then_children, className="rc-card", id="patient-drivers-then"),
    ]


def _change_words(label: str, now_text: str | None, then_text: str | None) -> str:
    """"Oxygen saturation (SpO2) 90 % (+0.41), was 89 % (+0.08)": the label said once."""
    if now_text is None:
        return then_text or label
    if then_text is None:
        return now_text
    earlier = then_text[len(label):].strip() if then_text.startswith(label) else then_text
    return f"{now_text}, was {earlier}"


def _lab_rows(observations: pl.DataFrame, context_: DashboardContext, now: Any) -> list[dict[str, Any]]:
    latest = read_models.latest_values(observations.filter(pl.col("kind") == "lab"))
    return [
        {
            "variable": r["variable"],
            "label": r["label"],
            "last": value_text(r["last_value"], r["decimals"], r["unit_display"]),
            "previous": value_text(r["previous_value"], r["decimals"], r["unit_display"]),
            "when": clock_text(r["last_charttime"], context_.zone, now=now),
        }
        for r in latest.iter_rows(named=True)
    ]


def _history_rows(history: pl.DataFrame, context_: DashboardContext, now: Any) -> list[dict[str, Any]]:
    rows = []
    for r in history.sort("at", "event_id", descending=True).iter_rows(named=True):
        who = r["actor"] if not r["role"] else f"{r['actor']} ({ROLE_NAMES.get(r['role'], r['role'])})"
        change = STATE_LABELS.get(r["to_state"], r["to_state"])
        if r["from_state"]:
            change = f"{STATE_LABELS.get(r['from_state'], r['from_state'])} → {change}"
        rows.append(
            {
                "event_id": r["event_id"],
                "when": clock_text(r["at"], context_.zone, now=now),
                "alert": KIND_LABELS.get(r["kind"], r["kind"]),
                "action": ACTION_LABELS.get(r["action"], r["action"]),
                "change": change,
                "who": who,
                "reason": r["reason"] or "",
            }
        )
    return rows


@callback(
    Output("patient-header", "children"),
    Output("patient-risk", "figure"),
    Output("patient-drivers", "children"),
    Output("patient-vitals", "figure"),
    Output("patient-labs", "rowData"),
    Output("patient-history", "rowData"),
    Output("patient-alert", "options"),
    Output("patient-alert", "value"),
    Output("patient-alert", "style"),
    Input("patient-interval", "n_intervals"),
    Input("patient-action-done", "data"),
    State("patient-encounter", "data"),
    State("patient-alert", "value"),
)
def refresh(_ticks: int | None, _done: int | None, encounter_id: Any, chosen_alert: int | None) -> tuple:
    """Reload everything on the page (every REFRESH_SECONDS and after an action)."""
    user = auth.page_user(PAGE)
    if user is None:
        raise PreventUpdate
    context_ = context()
    header = _visible_header(context_, user, encounter_id)
    if header is None:
        raise PreventUpdate
    now = context_.clock()
    model = context_.model()
    engine = context_.engine
    alerts = read_models.encounter_alerts(engine, header.encounter_id)
    history = read_models.risk_history(engine, header.encounter_id, model_version=model.version,
                                 since=header.scored_at - timedelta(hours=CHART_HOURS))  # fmt: skip
    markers = read_models.alert_markers(engine, header.encounter_id, model_version=model.version).filter(
        pl.col("at") >= header.scored_at - timedelta(hours=CHART_HOURS)
    )
    policy = context_.policy_for(header.ward, model)
    figure = risk_figure(history, markers, raise_threshold=policy.raise_threshold if policy else None,
                         clear_threshold=policy.clear_threshold if policy else None, zone=context_.zone)  # fmt: skip
    comparison = read_models.driver_comparison(engine, header.encounter_id, model_version=model.version, hours=CHANGE_HOURS,
                                         catalog=context_.catalog)  # fmt: skip
    observations = read_models.encounter_observations(context_.lake, header.encounter_id, until=now, hours=VITALS_HOURS,
                                                catalog=context_.catalog)  # fmt: skip
    if observations.height == 0:  # the data's own present may lag the clock (a demo, a paused feed)
        observations = read_models.encounter_observations(context_.lake, header.encounter_id, until=header.scored_at,
                                                    hours=VITALS_HOURS, catalog=context_.catalog)  # fmt: skip
    vitals = vitals_figure(observations.filter(pl.col("kind") == "vital"), catalog=context_.catalog, zone=context_.zone)
    events = alert_history(engine, encounter_id=header.encounter_id)
    options = [
        {"label": f"{KIND_LABELS.get(r['kind'], r['kind'])} · {STATE_LABELS.get(r['state'], r['state'])}", "value": r["alert_id"]}
        for r in alerts.iter_rows(named=True)
    ]
    values = [o["value"] for o in options]
    value = chosen_alert if chosen_alert in values else (values[0] if values else None)
    return (
        _header_block(header, alerts, context_, now),
        figure,
        _drivers_block(comparison, context_, now),
        vitals,
        _lab_rows(observations, context_, now),
        _history_rows(events, context_, now),
        options,
        value,
        {"marginBottom": "0.6rem"} if len(options) > 1 else {"display": "none"},
    )


@callback(
    Output("patient-action-target", "children"),
    Output("patient-ack", "disabled"),
    Output("patient-snooze", "disabled"),
    Output("patient-resolve", "disabled"),
    Input("patient-alert", "value"),
    State("patient-alert", "options"),
    State("patient-encounter", "data"),
)
def choose(alert_id: object, options: object, encounter_id: Any) -> tuple:
    """Say which alert the buttons act on and enable those that apply to its state."""
    user = auth.page_user(PAGE)
    if user is None or not user.may_act:
        raise PreventUpdate
    context_ = context()
    header = _visible_header(context_, user, encounter_id)
    if header is None:
        raise PreventUpdate
    alert_id = valid_alert_id(alert_id)
    if alert_id is None:
        return "No open alert for this patient.", True, True, True
    alerts = read_models.encounter_alerts(context_.engine, header.encounter_id).filter(pl.col("alert_id") == alert_id)
    if alerts.height == 0:
        return "No open alert for this patient.", True, True, True
    row = alerts.row(0, named=True)
    now = context_.clock()
    text = alert_actions.target_text(row["kind"], row["state"], clock_text(row["raised_at"], context_.zone, now=now))
    return text, row["state"] == "acknowledged", row["state"] == "snoozed", False


@callback(
    Output("patient-action-message", "children"),
    Output("patient-action-done", "data"),
    Output("patient-reason", "value"),
    Input("patient-ack", "n_clicks"),
    Input("patient-snooze", "n_clicks"),
    Input("patient-resolve", "n_clicks"),
    State("patient-alert", "value"),
    State("patient-reason", "value"),
    State("patient-snooze-hours", "value"),
    State("patient-action-done", "data"),
    prevent_initial_call=True,
)
def act(_ack: int | None, _snooze: int | None, _resolve: int | None, alert_id: object, reason: object,
        snooze_hours: object, done: object) -> tuple:  # fmt: skip
    """Apply the pressed button to the chosen alert (checked server-side)."""
    user = auth.page_user(PAGE)
    if user is None:
        raise PreventUpdate
    if alert_id is None:
        return alert_actions.message(False, "This patient has no open alert."), no_update, no_update
    action = {"patient-ack": "acknowledge", "patient-snooze": "snooze", "patient-resolve": "resolve"}[str(ctx.triggered_id)]
    outcome = act_on_alert(user, alert_id, action, reason=reason, snooze_hours=snooze_hours)
    return (
        alert_actions.message(outcome.ok, outcome.message),
        (done if isinstance(done, int) else 0) + 1 if outcome.ok else no_update,
        "" if outcome.ok else no_update,
    )
