"""Plotly figures of the model and fairness reports: discrimination, calibration, the threshold
trade-off and performance by week (the Model page); one metric by group and the audits' trend
(the Fairness page). Drawing only: the frames come from riskcast.read_models, and
every number is shown as it is given (a missing one is left out, never drawn as 0).
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from riskcast import read_models
from riskcast.dashboards.components.figures import FONT, RISK_COLOUR, empty_figure
from riskcast.dashboards.components.report_text import (
    METRIC_DIGITS,
    SUPPRESSED,
    feature_text,
    finite,
    interval_text,
    metric_text,
    number_text,
    percent_text,
    threshold_text,
)
from riskcast.dashboards.components.text import clock_text

BASELINE_COLOUR = "#6b7385"
ABLATION_COLOUR = "#8a6d00"
PPV_COLOUR = "#1e6b45"
NEWS2_COLOUR = "#a4261c"
MUTED = "#576072"
FEATURE_COLOURS = ("#1f4e8c", "#a4261c", "#1e6b45", "#8a6d00", "#6b3fa0", "#576072", "#0f7c8c")


def _report_layout(figure: go.Figure, *, height: int, top: int = 40, legend_y: float = 1.02) -> go.Figure:
    """The reports' look: white, light grid, legend above the plot (``top``: the top margin in px)."""
    figure.update_layout(
        height=height, margin=dict(l=60, r=24, t=top, b=48), paper_bgcolor="white", plot_bgcolor="white", font=FONT,
        hovermode="closest", legend=dict(orientation="h", yanchor="bottom", y=legend_y, xanchor="left", x=0),
    )  # fmt: skip
    figure.update_xaxes(showgrid=True, gridcolor="#eceef2", linecolor="#c5cad3", zeroline=False)
    figure.update_yaxes(showgrid=True, gridcolor="#eceef2", linecolor="#c5cad3", zeroline=False)
    return figure


# ---------------------------------------------------------------------------- the Model page


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
        hover = [f"{r['label']}: {interval_text(r[metric], r[f'{metric}_low'], r[f'{metric}_high'])}" for r in rows]
        figure.add_trace(
            go.Scatter(
                x=values, y=labels, mode="markers", showlegend=False, text=hover, hovertemplate="%{text}<extra></extra>",
                marker=dict(size=11, color=colours, symbol=symbols, line=dict(width=1.5, color=colours)),
                error_x=dict(type="data", array=plus, arrayminus=minus, visible=True, color="#9aa1ad", thickness=1.5, width=4),
            ),
            row=1, col=column,
        )  # fmt: skip
    figure.add_vline(x=0.5, line=dict(color="#c5cad3", dash="dot"), row=1, col=1)
    if finite(prevalence):
        figure.add_vline(x=prevalence, line=dict(color="#c5cad3", dash="dot"), row=1, col=2,
                         annotation_text="no skill", annotation_position="top right",
                         annotation_font=dict(size=11, color=MUTED))  # fmt: skip
    _report_layout(figure, height=70 + 46 * len(rows))
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
        f"risk {percent_text(lo, digits=2)}–{percent_text(hi, digits=2)}<br>predicted {p:.2f}%, observed {o:.2f}%<br>{c:,} hours"
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
    _report_layout(figure, height=400)
    figure.update_xaxes(title_text="mean predicted risk (%)", range=[0, top], ticksuffix="%")
    figure.update_yaxes(title_text="observed event rate (%)", range=[0, top], ticksuffix="%", scaleanchor="x", scaleratio=1)
    return figure


def tradeoff_figure(tradeoff: read_models.ThresholdTradeoff) -> go.Figure:
    """Hourly sensitivity and PPV, and the share of events flagged within 48 h, against
    alert episodes per 100 patient-days; NEWS2 at 3/5/7 and the current threshold marked."""
    model = tradeoff.model.drop_nulls("alerts_per_100_patient_days")
    if model.height == 0:
        return empty_figure("The trade-off report has no thresholds.")
    figure = go.Figure()
    thresholds = [threshold_text(t) for t in model["threshold"].to_list()]
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
    if current is not None and finite(current.alerts_per_100_patient_days):
        figure.add_vline(x=current.alerts_per_100_patient_days, line=dict(color=RISK_COLOUR, width=2), layer="below")
        figure.add_trace(
            go.Scatter(
                x=[current.alerts_per_100_patient_days] * 2,
                y=[None if v is None else v * 100 for v in (current.sensitivity, current.ppv)],
                mode="markers", name=f"Now: risk ≥ {threshold_text(current.threshold)}", text=["sensitivity", "PPV"],
                marker=dict(symbol="star", size=17, color="#e8a33d", line=dict(color=RISK_COLOUR, width=1.5)),
                hovertemplate="current threshold<br>%{x:.1f} alerts per 100 patient-days<br>%{text}: %{y:.0f}%<extra></extra>",
            )
        )  # fmt: skip
    _report_layout(figure, height=430)
    figure.update_layout(margin=dict(l=60, r=24, t=60, b=48), legend=dict(y=1.1))
    figure.update_xaxes(title_text="alert episodes per 100 patient-days", rangemode="tozero")
    figure.update_yaxes(title_text="%", range=[0, 102], ticksuffix="%")
    return figure


def over_time_figure(
    performance: pl.DataFrame,
    *,
    empty_text: str = "This version has no scores yet, so there is nothing to follow over time.",
) -> go.Figure:
    """Weekly AUROC and AUPRC with their intervals; weeks without enough outcomes are
    marked as such, with no point; `empty_text` when there is no week to draw."""
    if performance.height == 0:
        return empty_figure(empty_text)
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
        pending = performance.filter(pl.col("status") != read_models.STATUS_MEASURED)
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
    _report_layout(figure, height=330)
    lowest = min([v for v in performance["auroc_low"].to_list() + performance["auroc"].to_list() if v is not None] + [0.5])
    figure.update_yaxes(range=[min(0.4, math.floor(lowest * 10) / 10), 1.0], row=1, col=1)
    figure.update_yaxes(range=[0, tops[1]], row=1, col=2)
    figure.update_xaxes(tickformat="%d %b", dtick=7 * 24 * 3600 * 1000)
    figure.update_annotations(font=dict(size=13, color=MUTED))
    return figure


# ---------------------------------------------------------------------------- the Fairness page


def groups_figure(groups: pl.DataFrame, metric: str, *, overall: pl.DataFrame, suppressed_label: str) -> go.Figure:
    """One metric per group with its 95% interval; the reference group darker, the overall
    value as a line; suppressed groups named on the axis with no bar."""
    if groups.height == 0:
        return empty_figure("No groups for this feature.")
    label = read_models.GROUP_METRIC_LABELS[metric]
    names = [g + (" (reference)" if r else "") for g, r in zip(groups["group"].to_list(), groups["reference"].to_list(), strict=True)]
    reported = [not s for s in groups["suppressed"].to_list()]
    values = [v if ok else None for v, ok in zip(groups[metric].to_list(), reported, strict=True)]
    lows, highs = groups[f"{metric}_low"].to_list(), groups[f"{metric}_high"].to_list()
    plus = [None if v is None or h is None else h - v for v, h in zip(values, highs, strict=True)]
    minus = [None if v is None or lo is None else v - lo for v, lo in zip(values, lows, strict=True)]
    colours = ["#1f4e8c" if r else "#7a9cc6" for r in groups["reference"].to_list()]
    hover = [metric_text(metric, v, lo, hi) for v, lo, hi in zip(values, lows, highs, strict=True)]
    figure = go.Figure(
        go.Bar(
            x=names, y=values, marker_color=colours, text=hover, textposition="none", hovertemplate="%{x}<br>" + label + ": %{text}<extra></extra>",
            error_y=dict(type="data", array=plus, arrayminus=minus, visible=True, color="#3b4252", thickness=1.3),
            name=label, showlegend=False,
        )
    )  # fmt: skip
    top = max([h for h in highs if h is not None] + [v for v in values if v is not None] + [0.0])
    for name, ok in zip(names, reported, strict=True):
        if not ok:
            figure.add_annotation(x=name, y=0, yref="y", text=SUPPRESSED, showarrow=False, yanchor="bottom", textangle=-90,
                                  font=dict(size=12, color="#7a4a00"))  # fmt: skip
    whole = overall.filter(pl.col("metric") == metric)
    if whole.height and finite(whole["value"][0]):
        figure.add_hline(y=whole["value"][0], line=dict(color="#9aa1ad", dash="dash", width=1.2),
                         annotation_text=f"all held-out patients {number_text(whole['value'][0], METRIC_DIGITS.get(metric, 2))}",
                         annotation_position="top right", annotation_font=dict(size=11, color="#576072"))  # fmt: skip
    _report_layout(figure, height=340, top=44, legend_y=1.04)
    figure.update_yaxes(title_text=label, range=[min(0.0, min([v for v in lows if v is not None] + [0.0])), (top or 1.0) * 1.12])
    if not any(reported):
        figure.add_annotation(x=0.5, y=0.6, xref="paper", yref="paper", showarrow=False, font=dict(size=14, color="#576072"),
                              text=f"Every group is {suppressed_label}: no number can be shown.")  # fmt: skip
    return figure


def trend_figure(trend: pl.DataFrame, *, selected: int | None, zone: Any) -> go.Figure:
    """Per feature across audits: the smallest sensitivity ratio of a group to the reference
    (the gate that guards against missed deteriorations) and the equalized-odds difference,
    with intervals where the audit has them; the chosen audit is marked."""
    comparable = trend.filter(pl.col("reported_groups") >= 2)
    if comparable.height == 0:
        return empty_figure("No audit had two groups of one feature large enough to compare.", height=260)
    audits_in_order = trend.unique("audit_id", keep="first", maintain_order=True)
    names = {a: f"{clock_text(t, zone)} · #{a}" for a, t in audits_in_order.select("audit_id", "created_at").iter_rows()}
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                           subplot_titles=("Smallest sensitivity ratio to the reference group",
                                           "Equalized-odds difference (95% CI)"))  # fmt: skip
    for index, (feature_key, rows) in enumerate(comparable.group_by("feature", maintain_order=True)):
        feature = str(feature_key[0])
        colour = FEATURE_COLOURS[index % len(FEATURE_COLOURS)]
        when = [names[a] for a in rows["audit_id"].to_list()]
        verdicts = [str(v).upper() for v in rows["verdict"].to_list()]
        symbols = ["x" if v == "FAIL" else "diamond" if v == "WARN" else "circle" for v in verdicts]
        hover = [f"{feature_text(feature)} · audit {a} · {v}<br>smallest ratio {number_text(r)} ({g or '–'})"
                 for a, v, r, g in zip(rows["audit_id"].to_list(), verdicts, rows["lowest_sensitivity_ratio"].to_list(),
                                       rows["lowest_sensitivity_ratio_group"].to_list(), strict=True)]  # fmt: skip
        figure.add_trace(
            go.Scatter(x=when, y=rows["lowest_sensitivity_ratio"].to_list(), mode="lines+markers", name=feature_text(feature),
                       line=dict(color=colour, width=2), marker=dict(size=11, symbol=symbols, color=colour),
                       text=hover, hovertemplate="%{text}<extra></extra>", legendgroup=feature),
            row=1, col=1,
        )  # fmt: skip
        values = rows["equalized_odds_difference"].to_list()
        plus = [None if v is None or h is None else h - v for v, h in zip(values, rows["equalized_odds_difference_high"].to_list(), strict=True)]
        minus = [None if v is None or lo is None else v - lo for v, lo in zip(values, rows["equalized_odds_difference_low"].to_list(), strict=True)]
        figure.add_trace(
            go.Scatter(x=when, y=values, mode="lines+markers", name=feature_text(feature), showlegend=False,
                       line=dict(color=colour, width=2), marker=dict(size=10, symbol=symbols, color=colour),
                       error_y=dict(type="data", array=plus, arrayminus=minus, visible=True, color=colour, thickness=1),
                       hovertemplate=f"{feature_text(feature)}<br>%{{y:.3f}}<extra></extra>", legendgroup=feature),
            row=1, col=2,
        )  # fmt: skip
    figure.add_hline(y=0.8, line=dict(color="#a4261c", dash="dot", width=1), row=1, col=1, annotation_text="fail below 0.8",
                     annotation_position="bottom right", annotation_font=dict(size=11, color="#a4261c"))  # fmt: skip
    figure.add_hline(y=1.0, line=dict(color="#9aa1ad", width=1), row=1, col=1)
    if selected in names:
        for column in (1, 2):
            figure.add_vline(x=list(names).index(selected), line=dict(color=RISK_COLOUR, width=1, dash="dash"), row=1, col=column)
    _report_layout(figure, height=380, top=44, legend_y=1.04)
    figure.update_layout(margin=dict(l=60, r=24, t=96, b=48), legend=dict(y=1.16))
    figure.update_yaxes(rangemode="tozero")
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=list(names.values()),
                     range=[-0.5, len(names) - 0.5], title_text="audit")
    figure.update_annotations(font=dict(size=12, color="#576072"), selector=dict(xref="x domain"))
    return figure
