"""The ward view: admitted patients, most urgent first, refreshed every REFRESH_SECONDS.

Each row: alert state (new and escalated alerts highlighted), risk (or "Insufficient data",
never a low number), trend since the previous hourly score, the top drivers in words, and
when vitals were last charted. Choosing a row with an alert opens the action panel.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
import polars as pl
from dash import Input, Output, State, callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from riskcast import read_models
from riskcast.dashboards import auth
from riskcast.dashboards.actions import act_on_alert, valid_alert_id
from riskcast.dashboards.components import alert_actions
from riskcast.dashboards.components.grids import grid
from riskcast.dashboards.components.notices import not_allowed
from riskcast.dashboards.components.shell import ROLE_NAMES
from riskcast.dashboards.components.text import (
    INSUFFICIENT_LABEL,
    KIND_LABELS,
    STATE_LABELS,
    ago_text,
    clock_text,
    hours_text,
    markdown_link,
    risk_text,
    trend_text,
    zone_name,
)
from riskcast.dashboards.context import context
from riskcast.score_status import ScoreStatus

PAGE = "ward"
REFRESH_SECONDS = 30
ALL_WARDS = "__all__"
MAX_TEXT_CHARACTERS = 200
"""The longest ward name or grid field accepted back from the browser."""

dash.register_page(__name__, path="/", name="Ward", title="Ward · riskcast", order=0, nav=True, riskcast_page=PAGE)

COLUMNS: list[dict[str, Any]] = [
    {
        "field": "alert_label",
        "headerName": "Alert",
        "minWidth": 150,
        "maxWidth": 190,
        "cellClassRules": {
            "rc-cell-state-new": "params.data.alert_state === 'new'",
            "rc-cell-state-escalated": "params.data.alert_state === 'escalated'",
            "rc-cell-state-acknowledged": "params.data.alert_state === 'acknowledged'",
            "rc-cell-state-snoozed": "params.data.alert_state === 'snoozed'",
        },
    },
    {"field": "patient_link", "headerName": "Patient", "cellRenderer": "markdown", "minWidth": 120, "maxWidth": 150},
    {"field": "ward", "headerName": "Ward", "minWidth": 140, "maxWidth": 200},
    {
        "field": "risk_label",
        "headerName": "Risk",
        "minWidth": 110,
        "maxWidth": 150,
        "cellClassRules": {
            "rc-cell-insufficient": f"params.data.status === '{ScoreStatus.INSUFFICIENT_DATA}'",
            "rc-cell-high": "params.data.at_or_above_alert",
        },
    },
    {
        "field": "trend_label",
        "headerName": "Trend",
        "headerTooltip": "Risk now against the previous hourly score",
        "minWidth": 100,
        "maxWidth": 130,
        "cellClassRules": {
            "rc-cell-rising": "params.data.trend === 'rising'",
            "rc-cell-falling": "params.data.trend === 'falling'",
            "rc-cell-steady": "params.data.trend === 'steady'",
        },
    },
    {"field": "reasons", "headerName": "Top drivers", "flex": 3, "minWidth": 320},
    {
        "field": "last_obs_label",
        "headerName": "Last vitals",
        "minWidth": 130,
        "maxWidth": 170,
        "cellClassRules": {"rc-cell-stale": f"params.data.status === '{ScoreStatus.INSUFFICIENT_DATA}'"},
    },
]
ROW_CLASSES = {
    "rc-row-action": "params.data.needs_action",
    "rc-row-insufficient": f"params.data.status === '{ScoreStatus.INSUFFICIENT_DATA}'",
}


# Fixed height so a long board draws only its visible rows (see components.grids.grid).
WARD_GRID_HEIGHT = "68vh"


def _legend() -> html.Div:
    def item(colour: str, text: str, *, dashed: bool = False) -> html.Span:
        style = {"background": colour}
        if dashed:
            style["border"] = "1px dashed #d4a72c"
        return html.Span([html.Span(className="rc-swatch", style=style), text])

    return html.Div(
        [
            item("#a4261c", "Alert needs action (new or escalated)"),
            item("#fff4d6", f"{INSUFFICIENT_LABEL}: vitals missing or overdue, no score", dashed=True),
            html.Span("▲ rising  ▼ falling  ▶ steady since the last hourly score"),
        ],
        className="rc-legend",
    )


def layout(**_: Any) -> html.Div:
    """The page for the signed-in user's wards (nothing at all for other roles)."""
    user = auth.page_user(PAGE)
    if user is None:
        return not_allowed()
    context_ = context()
    model = context_.model()
    wards = [w for w in read_models.scored_wards(context_.engine, model_version=model.version) if user.may_see_ward(w)]
    if user.visible_wards is not None:
        wards = sorted(set(wards) | set(user.visible_wards))
    options = [{"label": w, "value": w} for w in wards]
    if len(wards) > 1:
        options.insert(0, {"label": "All my wards" if user.visible_wards is not None else "All wards", "value": ALL_WARDS})
    policy = context_.policy_set.for_ward(wards[0] if len(wards) == 1 else None)
    return html.Div(
        [
            html.Div(
                [
                    html.Div([html.H1("Ward"), html.Div(id="ward-summary", className="rc-muted")]),
                    dcc.Dropdown(
                        id="ward-ward",
                        options=options,
                        value=ALL_WARDS if len(wards) > 1 else (wards[0] if wards else None),
                        clearable=False,
                        searchable=False,
                        className="rc-ward-select",
                    ),
                ],
                className="rc-page-head",
            ),
            html.Div(id="ward-freshness", className="rc-freshness"),
            _legend(),
            html.Div(
                grid(
                    "ward-grid",
                    columns=COLUMNS,
                    row_id="encounter_id",
                    selectable=True,
                    empty_text="No admitted patients with scores on this ward.",
                    row_class_rules=ROW_CLASSES,
                    height=WARD_GRID_HEIGHT,
                ),
                className="rc-card",
            ),
            alert_actions.action_panel(
                PAGE,
                may_act=user.may_act,
                max_snooze_hours=policy.max_snooze_hours,
                role_name=ROLE_NAMES.get(user.role, user.role),
            ),
            dcc.Store(id="ward-action-done", data=0),
            dcc.Interval(id="ward-interval", interval=REFRESH_SECONDS * 1000),
        ]
    )


def _rows(board: pl.DataFrame, *, raise_threshold: float | None, now: Any, zone: Any) -> list[dict[str, Any]]:
    rows = []
    for r in board.iter_rows(named=True):
        insufficient = r["status"] == ScoreStatus.INSUFFICIENT_DATA
        alert = ""
        if r["alert_state"]:
            alert = STATE_LABELS.get(r["alert_state"], r["alert_state"])
            if r["alert_kind"] != "risk":
                alert = f"{KIND_LABELS.get(r['alert_kind'], r['alert_kind'])} · {alert}"
        last_obs = ""
        if r["last_observed_at"] is not None:
            last_obs = f"{clock_text(r['last_observed_at'], zone, now=now)} ({hours_text(r['hours_since_observed'])} ago)"
        reasons = f"Missing or overdue: {r['missing']}" if insufficient else (r["drivers"] or "")
        rows.append(
            {
                "encounter_id": r["encounter_id"],
                "patient_link": markdown_link(r["encounter_id"], f"/patient/{quote(r['encounter_id'], safe='')}"),
                "ward": r["ward"],
                "status": r["status"],
                "risk_label": risk_text(r["risk"], r["status"]),
                "at_or_above_alert": bool(
                    raise_threshold is not None and r["risk"] is not None and r["risk"] >= raise_threshold
                ),
                "trend": r["trend"],
                "trend_label": trend_text(r["trend"], r["risk_change"]),
                "reasons": reasons,
                "alert_id": r["alert_id"],
                "alert_kind": r["alert_kind"],
                "alert_state": r["alert_state"],
                "alert_label": alert,
                "alert_raised": clock_text(r["alert_raised_at"], zone, now=now),
                "needs_action": bool(r["needs_action"]),
                "last_obs_label": last_obs,
            }
        )
    return rows


@callback(
    Output("ward-grid", "rowData"),
    Output("ward-freshness", "children"),
    Output("ward-freshness", "className"),
    Output("ward-summary", "children"),
    Output("ward-grid", "columnDefs"),
    Input("ward-interval", "n_intervals"),
    Input("ward-ward", "value"),
    Input("ward-action-done", "data"),
)
def refresh(_ticks: int | None, ward: str | None, _done: int | None) -> tuple:
    """Reload the board (every REFRESH_SECONDS, on a ward change, after an action)."""
    user = auth.page_user(PAGE)
    if user is None:
        raise PreventUpdate
    if ward is not None and (not isinstance(ward, str) or len(ward) > MAX_TEXT_CHARACTERS):
        raise PreventUpdate
    context_ = context()
    model = context_.model()
    now = context_.clock()
    if ward and ward != ALL_WARDS:
        if not user.may_see_ward(ward):
            raise PreventUpdate
        wards: tuple[str, ...] | None = (ward,)
    else:
        wards = user.visible_wards
    board = read_models.ward_board(context_.engine, model_version=model.version, now=now, wards=wards, lake=context_.lake,
                             catalog=context_.catalog)  # fmt: skip
    freshness = read_models.scoring_freshness(context_.engine, model_version=model.version, now=now)
    zone = context_.zone
    if freshness.scored_hour is None:
        banner = "No scores yet: the scoring job has not run."
    else:
        banner = (
            f"Scores for {clock_text(freshness.scored_hour, zone, now=now)} ({zone_name(zone)}), "
            f"written {ago_text(freshness.written_at, now)}. Refreshes every {REFRESH_SECONDS} s."
        )
        if freshness.stale:
            banner = f"Scores are {hours_text(freshness.age_hours)} old: hourly scoring may have stopped. " + banner
    policy = context_.policy_for(wards[0] if wards and len(wards) == 1 else None, model)
    if policy is not None and policy.raise_threshold is not None and policy.clear_threshold is not None:
        banner += f" Alerts at {policy.raise_threshold * 100:.0f}% risk, clearing below {policy.clear_threshold * 100:.0f}%."
    rows = _rows(board, raise_threshold=policy.raise_threshold if policy else None, now=now, zone=zone)
    needing = sum(1 for r in rows if r["needs_action"])
    insufficient = sum(1 for r in rows if r["status"] == ScoreStatus.INSUFFICIENT_DATA)
    summary = (
        f"{len(rows)} patients · {needing} alert{' needs' if needing == 1 else 's need'} action · "
        f"{insufficient} with insufficient data"
    )
    columns = [c for c in COLUMNS if c["field"] != "ward" or wards is None or len(wards) > 1]
    return rows, banner, "rc-freshness rc-freshness-stale" if freshness.stale else "rc-freshness", summary, columns


def _chosen_row(selected: object) -> dict[str, Any] | None:
    """The chosen grid row, when `selected` is what the grid sends: a list of row objects."""
    if not isinstance(selected, list) or not selected or not isinstance(selected[0], dict):
        return None
    return selected[0]


def _text(value: object) -> str:
    """A row field the page drew, as text (anything else the browser sent: nothing)."""
    return value if isinstance(value, str) and len(value) <= MAX_TEXT_CHARACTERS else ""


@callback(
    Output("ward-action-target", "children"),
    Output("ward-ack", "disabled"),
    Output("ward-snooze", "disabled"),
    Output("ward-resolve", "disabled"),
    Input("ward-grid", "selectedRows"),
)
def choose(selected: object) -> tuple:
    """Describe the chosen patient's alert and enable the buttons that apply to it."""
    user = auth.page_user(PAGE)
    if user is None or not user.may_act:
        raise PreventUpdate
    row = _chosen_row(selected)
    if row is None:
        return "Select a patient with an alert.", True, True, True
    if valid_alert_id(row.get("alert_id")) is None:
        return f"{_text(row.get('encounter_id'))}: no open alert.", True, True, True
    state = _text(row.get("alert_state"))
    target = alert_actions.target_text(_text(row.get("alert_kind")), state, _text(row.get("alert_raised")))
    text = f"{_text(row.get('encounter_id'))} · {target}"
    return text, state == "acknowledged", state == "snoozed", False


@callback(
    Output("ward-action-message", "children"),
    Output("ward-action-done", "data"),
    Output("ward-reason", "value"),
    Input("ward-ack", "n_clicks"),
    Input("ward-snooze", "n_clicks"),
    Input("ward-resolve", "n_clicks"),
    State("ward-grid", "selectedRows"),
    State("ward-reason", "value"),
    State("ward-snooze-hours", "value"),
    State("ward-action-done", "data"),
    prevent_initial_call=True,
)
def act(_ack: int | None, _snooze: int | None, _resolve: int | None, selected: object, reason: object,
        snooze_hours: object, done: object) -> tuple:  # fmt: skip
    """Apply the pressed button to the chosen patient's alert (checked server-side)."""
    user = auth.page_user(PAGE)
    if user is None:
        raise PreventUpdate
    row = _chosen_row(selected)
    if row is None or row.get("alert_id") is None:
        return alert_actions.message(False, "Select a patient with an alert first."), no_update, no_update
    action = {"ward-ack": "acknowledge", "ward-snooze": "snooze", "ward-resolve": "resolve"}[str(ctx.triggered_id)]
    outcome = act_on_alert(user, row.get("alert_id"), action, reason=reason, snooze_hours=snooze_hours)
    message = f"{outcome.encounter_id}: {outcome.message}" if outcome.encounter_id else outcome.message
    return (
        alert_actions.message(outcome.ok, message),
        (done if isinstance(done, int) else 0) + 1 if outcome.ok else no_update,
        "" if outcome.ok else no_update,
    )
