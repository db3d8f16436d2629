"""Plotly figures: a patient's risk over time, and their vitals. Drawing only: the frames
come from riskcast.read_models. Times are shown as wall-clock times in the display zone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from riskcast.catalog import Catalog
from riskcast.dashboards.components.text import ACTION_LABELS, zone_name
from riskcast.score_status import ScoreStatus

RISK_COLOUR = "#1f4e8c"
RAISE_COLOUR = "#a4261c"
CLEAR_COLOUR = "#8a6d00"
INSUFFICIENT_FILL = "rgba(212, 167, 44, 0.18)"
FONT = dict(family="Inter, Segoe UI, system-ui, sans-serif", size=13, color="#1b2230")
MARKERS = {
    "raised": ("triangle-up", RAISE_COLOUR),
    "re_alerted": ("triangle-up", RAISE_COLOUR),
    "escalated": ("diamond", "#6b130c"),
    "acknowledged": ("circle", "#1f4e8c"),
    "snoozed": ("square", "#6b7385"),
    "reopened": ("triangle-up-open", RAISE_COLOUR),
    "resolved": ("circle-open", "#1e6b45"),
    "moved": ("circle-open", "#576072"),
}
GRAPH_CONFIG = {"displayModeBar": False}


def _local(moments: list[datetime | None], zone: ZoneInfo) -> list[datetime | None]:
    """Wall-clock times in `zone`, without an offset (Plotly draws what it is given)."""
    return [m.astimezone(zone).replace(tzinfo=None) if m is not None else None for m in moments]


def _base_layout(figure: go.Figure, *, height: int, zone: ZoneInfo) -> go.Figure:
    figure.update_layout(
        height=height,
        margin=dict(l=56, r=24, t=36, b=40),
        paper_bgcolor="white",
        plot_bgcolor="white",
        font=FONT,
        hovermode="closest",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
    )
    figure.update_xaxes(showgrid=True, gridcolor="#eceef2", linecolor="#c5cad3", title_text=f"time ({zone_name(zone)})")
    figure.update_yaxes(showgrid=True, gridcolor="#eceef2", linecolor="#c5cad3", zeroline=False)
    return figure


def empty_figure(text: str, *, height: int = 220) -> go.Figure:
    """A blank figure that says why it is blank."""
    figure = go.Figure()
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                          font=dict(size=15, color="#576072"))
    figure.update_layout(height=height, paper_bgcolor="white", plot_bgcolor="white", font=FONT,
                         margin=dict(l=20, r=20, t=20, b=20))  # fmt: skip
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


SCORING_GAP = timedelta(minutes=90)
"""Hourly scores further apart than this are not joined by a line (no score in between)."""


def _break_at_gaps(times: list[datetime | None], values: list[float | None]) -> tuple[list, list]:
    """The points, with a point without a value between two more than SCORING_GAP apart."""
    xs: list = []
    ys: list = []
    for index, (moment, value) in enumerate(zip(times, values, strict=True)):
        previous = times[index - 1] if index else None
        if previous is not None and moment is not None and moment - previous > SCORING_GAP:
            xs.append(previous + SCORING_GAP)
            ys.append(None)
        xs.append(moment)
        ys.append(value)
    return xs, ys


def risk_figure(
    history: pl.DataFrame,
    markers: pl.DataFrame,
    *,
    raise_threshold: float | None,
    clear_threshold: float | None,
    zone: ZoneInfo,
) -> go.Figure:
    """Risk (%) per scored hour, the raise and clear thresholds, hours with insufficient data
    shaded (no point: never drawn as low risk), and alert events as markers.

    `history`: scored_at, risk, status (read_models.risk_history). `markers`: at, action, actor,
    role, reason, risk_at (read_models.alert_markers).
    """
    if history.height == 0:
        return empty_figure("No scores for this patient yet.")
    figure = go.Figure()
    times = _local(history["scored_at"].to_list(), zone)
    risks = [None if r is None else r * 100.0 for r in history["risk"].to_list()]
    line_x, line_y = _break_at_gaps(times, risks)
    figure.add_trace(
        go.Scatter(
            x=line_x, y=line_y, mode="lines+markers", name="Risk", connectgaps=False,
            line=dict(color=RISK_COLOUR, width=2.5), marker=dict(size=6, color=RISK_COLOUR),
            hovertemplate="%{x|%d %b %H:%M}<br>risk %{y:.0f}%<extra></extra>",
        )
    )  # fmt: skip
    statuses = history["status"].to_list()
    insufficient = [t for t, s in zip(times, statuses, strict=True) if s == ScoreStatus.INSUFFICIENT_DATA]
    for moment in insufficient:
        assert moment is not None
        figure.add_vrect(x0=moment - timedelta(minutes=30), x1=moment + timedelta(minutes=30), fillcolor=INSUFFICIENT_FILL,
                         line_width=0, layer="below")  # fmt: skip
    if insufficient:
        figure.add_trace(
            go.Scatter(x=[None], y=[None], mode="markers", name="Insufficient data (no score)",
                       marker=dict(symbol="square", size=12, color=INSUFFICIENT_FILL, line=dict(color="#d4a72c", width=1)))
        )  # fmt: skip
    top = max([r for r in risks if r is not None] + [0.0])
    if raise_threshold is not None:
        top = max(top, raise_threshold * 100.0)
        figure.add_hline(y=raise_threshold * 100.0, line=dict(color=RAISE_COLOUR, width=1.5),
                         annotation_text=f"alert at {raise_threshold * 100:.0f}%", annotation_position="top left",
                         annotation_font=dict(color=RAISE_COLOUR, size=12))  # fmt: skip
    if clear_threshold is not None:
        figure.add_hline(y=clear_threshold * 100.0, line=dict(color=CLEAR_COLOUR, width=1.2, dash="dash"),
                         annotation_text=f"clears below {clear_threshold * 100:.0f}%", annotation_position="bottom left",
                         annotation_font=dict(color=CLEAR_COLOUR, size=12))  # fmt: skip
    for action, rows in markers.group_by("action", maintain_order=True):
        name = str(action[0])
        symbol, colour = MARKERS.get(name, ("circle", "#576072"))
        hover = [
            f"{ACTION_LABELS.get(name, name)} by {actor}{f' ({role})' if role else ''}{f': {reason}' if reason else ''}"
            for actor, role, reason in rows.select("actor", "role", "reason").iter_rows()
        ]
        figure.add_trace(
            go.Scatter(
                x=_local(rows["at"].to_list(), zone),
                y=[0.0 if r is None else r * 100.0 for r in rows["risk_at"].to_list()],
                mode="markers", name=ACTION_LABELS.get(name, name),
                marker=dict(symbol=symbol, size=13, color=colour, line=dict(color="white", width=1)),
                text=hover, hovertemplate="%{x|%d %b %H:%M}<br>%{text}<extra></extra>",
            )
        )  # fmt: skip
    _base_layout(figure, height=320, zone=zone)
    figure.update_yaxes(title_text="risk (%)", range=[0, min(100.0, top * 1.25 + 2.0)], ticksuffix="%")
    return figure


def vitals_figure(observations: pl.DataFrame, *, catalog: Catalog, zone: ZoneInfo) -> go.Figure:
    """One small panel per vital sign charted (catalogue order), sharing the time axis.

    `observations`: read_models.encounter_observations, vitals only.
    """
    present = [name for name in catalog.vitals if name in set(observations["variable"].to_list())]
    if not present:
        return empty_figure("No vitals charted in this window.")
    titles = []
    for name in present:
        rows = observations.filter(pl.col("variable") == name)
        unit = rows["unit_display"][0] if rows.height else ""
        titles.append(f"{catalog[name].label}{f' ({unit})' if unit else ''}")
    figure = make_subplots(rows=len(present), cols=1, shared_xaxes=True, vertical_spacing=0.045, subplot_titles=titles)
    for row, name in enumerate(present, start=1):
        rows = observations.filter(pl.col("variable") == name)
        decimals = int(rows["decimals"][0])
        figure.add_trace(
            go.Scatter(
                x=_local(rows["charttime"].to_list(), zone), y=rows["value"].to_list(), mode="lines+markers",
                name=catalog[name].label, showlegend=False, line=dict(color=RISK_COLOUR, width=1.8), marker=dict(size=5),
                hovertemplate=f"%{{x|%d %b %H:%M}}<br>%{{y:.{decimals}f}}<extra>{catalog[name].label}</extra>",
            ),
            row=row, col=1,
        )  # fmt: skip
        codes = catalog[name].codes
        if codes:
            by_value: dict[float, str] = {}
            for letter, value in codes.items():
                by_value.setdefault(float(value), letter)
            figure.update_yaxes(tickvals=sorted(by_value), ticktext=[by_value[v] for v in sorted(by_value)], row=row, col=1)
    _base_layout(figure, height=110 * len(present) + 70, zone=zone)
    figure.update_layout(margin=dict(l=56, r=24, t=30, b=40))
    figure.update_annotations(font=dict(size=12, color="#576072"), x=0, xanchor="left")
    figure.update_xaxes(title_text=None)
    figure.update_xaxes(title_text=f"time ({zone_name(zone)})", row=len(present), col=1)
    return figure
