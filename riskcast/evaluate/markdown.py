"""The evaluation as a readable Markdown report: discrimination, calibration, operating point, baselines.

``evaluation_markdown(report)`` (also ``EvaluationReport.to_markdown()``) writes the numbers of
an ``EvaluationReport`` as tables, rounded for reading; the JSON (``to_dict()``) keeps them
whole. Formatting only: nothing is computed or read here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from riskcast.evaluate.metrics import AlertMetrics, EvaluationReport


def _num(value: float, digits: int = 3) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:.1f}%"


def _with_ci(value: float, interval: tuple[float, float]) -> str:
    if not all(math.isfinite(v) for v in interval):
        return _num(value)
    return f"{_num(value)} ({_num(interval[0])}–{_num(interval[1])})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _alert_rows(metrics: Sequence[AlertMetrics]) -> list[list[str]]:
    def line(name: str, render: Any) -> list[str]:
        return [name, *[render(m) for m in metrics]]

    return [
        line("alerts per 100 patient-days", lambda m: _num(m.alerts_per_100_patient_days, 1)),
        line("alert episodes", lambda m: f"{m.n_alert_episodes:,}"),
        line("flagged hours", lambda m: _pct(m.flag_rate)),
        line("sensitivity (hours)", lambda m: _pct(m.sensitivity)),
        line("specificity (hours)", lambda m: _pct(m.specificity)),
        line("PPV (hours)", lambda m: _pct(m.ppv)),
        line("NPV (hours)", lambda m: _pct(m.npv)),
        line("PPV (alert episodes)", lambda m: _pct(m.alert_ppv)),
        line(
            "events detected",
            lambda m: f"{_pct(m.encounter_sensitivity)} ({m.n_event_encounters_detected:,}/"
            f"{m.n_event_encounters_evaluable:,})",
        ),
        line("median lead time (h)", lambda m: _num(m.median_lead_time_hours, 1)),
        line("encounters without event flagged", lambda m: _pct(m.nonevent_encounter_flag_rate)),
    ]


def evaluation_markdown(report: EvaluationReport) -> str:
    """The report as Markdown: a title, then a section per kind of result, tables in each."""
    title = report.outcome or report.label
    lines = [
        f"# Evaluation: {title}",
        "",
        f"{report.n_rows:,} hourly rows, {report.n_encounters:,} encounters, {report.n_patients:,} patients, "
        f"{report.patient_days:,.1f} patient-days; {report.n_positive:,} positive rows "
        f"({_pct(report.prevalence)}).",
        "",
        "## Discrimination",
        "",
        "Intervals: 95% bootstrap, resampling patients.",
        "",
    ]
    lines += _table(
        ["score", "AUROC (95% CI)", "AUPRC (95% CI)", "rows", "positives", "missing score", "bootstrap"],
        [
            [
                name,
                _with_ci(d.auroc, d.auroc_ci),
                _with_ci(d.auprc, d.auprc_ci),
                f"{d.n_rows:,}",
                f"{d.n_positive:,}",
                f"{d.n_missing_score:,}",
                f"{d.n_boot_valid}/{d.n_boot}",
            ]
            for name, d in report.discrimination.items()
        ],
    )
    cal = report.calibration
    lines += [
        "",
        f"## Calibration ({cal.score})",
        "",
        f"Brier score {_num(cal.brier, 4)}; ECE {_num(cal.ece, 4)} ({cal.n_bins} equal-frequency bins); "
        f"calibration-in-the-large {cal.calibration_in_the_large:+.4f} (mean predicted "
        f"{_pct(cal.mean_predicted)}, observed {_pct(cal.observed_rate)}).",
        "",
    ]
    lines += _table(
        ["bin", "mean predicted", "observed rate", "rows"],
        [
            [str(r["bin"]), _pct(r["mean_predicted"]), _pct(r["observed_rate"]), f"{r['count']:,}"]
            for r in cal.reliability.iter_rows(named=True)
        ],
    )
    op = report.operating_point
    lines += [
        "",
        f"## Operating point ({op.score} >= {op.threshold:.4g})",
        "",
        f"**{op.promise}** (on this evaluation data).",
        "",
        f"Events are detected when flagged at least once in the {op.detection_window_hours:g} h "
        "before the event; lead time runs from the first such flag to the event.",
        "",
    ]
    lines += _table(["metric", op.score], _alert_rows([op]))
    if report.comparisons:
        lines += ["", "## Baselines at the same alert rate", ""]
        for name, comparison in report.comparisons.items():
            base, model = comparison.baseline_metrics, comparison.model_metrics
            lines += [
                f"### {name} >= {comparison.baseline_threshold:g}",
                "",
            ]
            lines += _table(
                ["metric", f"{name} >= {comparison.baseline_threshold:g}", f"{model.score} >= {model.threshold:.4g}"],
                _alert_rows([base, model]),
            )
            lines.append("")
    if report.utility is not None:
        lines += ["", "## PhysioNet 2019 utility", "", "1 is the best possible; 0 is never alarming.", ""]
        lines += _table(["operating point", "normalised utility"], [[k, _num(v)] for k, v in report.utility.items()])
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"
