"""Data health: are the feeds arriving, what was quarantined, did the jobs run.

Feed freshness is riskcast.monitoring's, the same the monitor job raises system alerts from:
per ward with admitted patients, the latest charted time of each variable it received in
the last week against now (stale when older than the catalogue's stale_after_hours), and a
ward that received nothing at all as one stale row; quarantine counts come from the store's
quarantine table; runs from the store's runs and job_runs tables. Aggregates only: no
patient appears on this page.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, callback, dcc, html
from dash.exceptions import PreventUpdate

from riskcast import read_models
from riskcast.dashboards import auth
from riskcast.dashboards.components.grids import grid
from riskcast.dashboards.components.notices import not_allowed
from riskcast.dashboards.components.text import ago_text, clock_text, hours_text, zone_name
from riskcast.dashboards.context import context

PAGE = "data-health"
REFRESH_SECONDS = 60

dash.register_page(__name__, path="/data-health", name="Data health", title="Data health · riskcast", order=2, nav=True,
                   riskcast_page=PAGE)  # fmt: skip

FRESHNESS_COLUMNS = [
    {"field": "ward", "headerName": "Ward", "minWidth": 170},
    {"field": "label", "headerName": "Variable", "flex": 2, "minWidth": 180},
    {"field": "kind", "headerName": "Kind", "maxWidth": 100},
    {"field": "last", "headerName": "Last charted", "minWidth": 140},
    {"field": "age", "headerName": "Age", "minWidth": 90, "cellClassRules": {"rc-cell-stale": "params.data.stale"}},
    {"field": "limit", "headerName": "Stale after", "minWidth": 100},
    {"field": "status", "headerName": "Status", "minWidth": 90, "cellClassRules": {"rc-cell-stale": "params.data.stale"}},
]
QUARANTINE_COLUMNS = [
    {"field": "table_name", "headerName": "Table", "minWidth": 120},
    {"field": "rule", "headerName": "Rule broken", "flex": 2, "minWidth": 160},
    {"field": "rows", "headerName": "Rows", "maxWidth": 110},
    {"field": "batches", "headerName": "Batches", "maxWidth": 110},
    {"field": "last", "headerName": "Last", "minWidth": 130},
]
RUN_COLUMNS = [
    {"field": "what", "headerName": "Run", "minWidth": 140},
    {"field": "status", "headerName": "Status", "minWidth": 110,
     "cellClassRules": {"rc-cell-high": "params.data.status === 'failed'", "rc-cell-stale": "params.data.status === 'running'"}},
    {"field": "started", "headerName": "Started", "minWidth": 150},
    {"field": "seconds", "headerName": "Took", "maxWidth": 110},
    {"field": "error", "headerName": "Error", "flex": 2, "minWidth": 200},
]  # fmt: skip


def layout(**_: Any) -> html.Div:
    """The page (nothing at all for roles that may not open it)."""
    if auth.page_user(PAGE) is None:
        return not_allowed()
    return html.Div(
        [
            html.Div([html.H1("Data health"), html.Div(id="data-health-summary", className="rc-muted")],
                     className="rc-page-head"),
            html.Div(
                [html.H2("Feed freshness by ward and variable (stalest first)"),
                 grid("data-health-freshness", columns=FRESHNESS_COLUMNS, row_id="key", empty_text="No ward has admitted patients.")],
                className="rc-card",
            ),
            html.Div(
                [
                    html.Div([html.H2("Quarantined input rows"),
                              grid("data-health-quarantine", columns=QUARANTINE_COLUMNS, row_id="key",
                                   empty_text="Nothing quarantined.")], className="rc-card"),
                    html.Div([html.H2("Latest runs"),
                              grid("data-health-runs", columns=RUN_COLUMNS, row_id="key", empty_text="No runs yet.")],
                             className="rc-card"),
                ],
                className="rc-row",
            ),
            dcc.Interval(id="data-health-interval", interval=REFRESH_SECONDS * 1000),
        ]
    )  # fmt: skip


@callback(
    Output("data-health-freshness", "rowData"),
    Output("data-health-quarantine", "rowData"),
    Output("data-health-runs", "rowData"),
    Output("data-health-summary", "children"),
    Input("data-health-interval", "n_intervals"),
)
def refresh(_ticks: int | None) -> tuple:
    """Reload the three tables."""
    if auth.page_user(PAGE) is None:
        raise PreventUpdate
    context_ = context()
    now = context_.clock()
    zone = context_.zone
    freshness = read_models.feed_freshness(context_.lake, now=now, catalog=context_.catalog)
    fresh_rows = [
        {
            "key": f"{r['ward']}|{r['variable']}",
            "ward": r["ward"],
            "label": r["label"],
            "kind": r["kind"],
            "last": clock_text(r["last_charttime"], zone, now=now),
            "age": hours_text(r["hours_since"]),
            "limit": hours_text(r["stale_after_hours"]),
            "stale": bool(r["stale"]),
            "status": "Stale" if r["stale"] else "Fresh",
        }
        for r in freshness.iter_rows(named=True)
    ]
    quarantine = read_models.quarantine_summary(context_.engine)
    quarantine_rows = [
        {"key": f"{r['table_name']}|{r['rule']}", "table_name": r["table_name"], "rule": r["rule"], "rows": r["rows"],
         "batches": r["batches"], "last": clock_text(r["last_at"], zone, now=now)}
        for r in quarantine.iter_rows(named=True)
    ]  # fmt: skip
    runs = read_models.recent_runs(context_.engine, limit=20)
    run_rows = [
        {
            "key": f"{i}",
            "what": r["kind"] if r["source"] == "run" else f"job: {r['kind']}",
            "status": r["status"],
            "started": f"{clock_text(r['started_at'], zone, now=now)} ({ago_text(r['started_at'], now)})",
            "seconds": "" if r["seconds"] is None else f"{r['seconds']:.1f} s",
            "error": r["error"] or "",
        }
        for i, r in enumerate(runs.iter_rows(named=True))
    ]
    stale = sum(1 for r in fresh_rows if r["stale"])
    summary = (
        f"{stale} of {len(fresh_rows)} ward feeds stale · {int(quarantine['rows'].sum() or 0)} rows quarantined · "
        f"times in {zone_name(zone)}"
    )
    return fresh_rows, quarantine_rows, run_rows, summary
