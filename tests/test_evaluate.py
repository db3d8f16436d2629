"""riskcast.evaluate: discrimination, calibration, alert metrics, baselines, PhysioNet utility."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from riskcast.errors import EvaluationError
from riskcast.evaluate import (
    alert_metrics,
    calibration,
    compare_at_same_alert_rate,
    discrimination,
    evaluate,
    predictions_utility,
    threshold_at_alert_rate,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
UTC_US = pl.Datetime("us", "UTC")


def hourly(
    encounter: str,
    scores: list[float],
    *,
    labels: list[int] | None = None,
    event_hour: float | None = None,
    patient: str | None = None,
    score: str = "risk",
) -> pl.DataFrame:
    """One encounter: one row per hour from T0, with the encounter's event at T0 + event_hour."""
    n = len(scores)
    event = None if event_hour is None else T0 + timedelta(hours=event_hour)
    return pl.DataFrame(
        {
            "encounter_id": [encounter] * n,
            "patient_id": [patient or f"p-{encounter}"] * n,
            "time": [T0 + timedelta(hours=h) for h in range(n)],
            score: [float(s) for s in scores],
            "label": labels if labels is not None else [0] * n,
            "event_time": [event] * n,
        },
        schema_overrides={"time": UTC_US, "event_time": UTC_US, "label": pl.Int8},
    )


def random_cohort(n_patients: int, rows_per_patient: int, *, seed: int) -> pl.DataFrame:
    """Patients whose risk is informative but noisy, with ties (risk rounded to 2 decimals)."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), rows_per_patient)
    label = (rng.random(patient.size) < 0.2).astype(np.int8)
    risk = np.round(np.clip(0.3 * label + rng.random(patient.size) * 0.7, 0, 1), 2)
    return pl.DataFrame({"patient_id": patient, "risk": risk, "label": label})


# --------------------------------------------------------------------------- discrimination


def test_auroc_and_auprc_equal_sklearns_on_tied_scores():
    frame = random_cohort(40, 7, seed=1)

    result = discrimination(frame, n_boot=0)

    y, s = frame["label"].to_numpy(), frame["risk"].to_numpy()
    assert result.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert result.auprc == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_bootstrap_interval_contains_the_point_estimate():
    result = discrimination(random_cohort(60, 5, seed=2), n_boot=200, seed=0)

    assert result.auroc_ci[0] <= result.auroc <= result.auroc_ci[1]
    assert result.auprc_ci[0] <= result.auprc <= result.auprc_ci[1]
    assert result.n_boot_valid == 200


def test_bootstrap_resamples_patients_so_extra_rows_of_a_patient_add_no_information():
    # 50 patients with one row each, then the same patients with every row repeated 20 times
    once = random_cohort(50, 1, seed=3)
    repeated = once.select(pl.all().repeat_by(20).explode())

    rows_of_once = discrimination(once, cluster=None, n_boot=200, seed=7)
    patients_of_repeated = discrimination(repeated, n_boot=200, seed=7)
    rows_of_repeated = discrimination(repeated, cluster=None, n_boot=200, seed=7)

    # resampling patients sees 50 units either way: the very same intervals
    assert patients_of_repeated.auroc_ci == pytest.approx(rows_of_once.auroc_ci, abs=1e-12)
    # resampling rows would pretend to have 1,000 units and give far narrower intervals
    width = patients_of_repeated.auroc_ci[1] - patients_of_repeated.auroc_ci[0]
    row_width = rows_of_repeated.auroc_ci[1] - rows_of_repeated.auroc_ci[0]
    assert width > 2.5 * row_width


def test_bootstrap_skips_resamples_that_hold_one_class():
    # patient a has only positive rows, patient b only negative ones
    frame = pl.DataFrame({"patient_id": ["a"] * 5 + ["b"] * 5, "risk": np.linspace(0, 1, 10), "label": [1] * 5 + [0] * 5})

    result = discrimination(frame, n_boot=200, seed=0)

    assert 60 < result.n_boot_valid < 140  # {a, b} is drawn half the time


def test_null_scores_rank_below_every_scored_row():
    frame = pl.DataFrame({"patient_id": [1, 2, 3, 4], "news2": [None, 1.0, float("nan"), 0.0], "label": [0, 1, 0, 1]})

    result = discrimination(frame, score="news2", n_boot=0)

    assert result.n_missing_score == 2
    assert result.auroc == pytest.approx(roc_auc_score([0, 1, 0, 1], [-1, 1, -1, 0]))


def test_auroc_without_positive_rows_raises_naming_the_counts():
    frame = pl.DataFrame({"patient_id": range(1234), "risk": [0.1] * 1234, "label": [0] * 1234})

    with pytest.raises(EvaluationError) as error:
        discrimination(frame)

    assert str(error.value) == (
        "cannot compute AUROC: 0 positive rows among 1,234 (label 'label'); need at least one of each class"
    )


def test_censored_null_labels_raise_with_their_count():
    frame = pl.DataFrame({"patient_id": [1, 2, 3], "risk": [0.1, 0.2, 0.3], "label": [0, None, 1]})

    with pytest.raises(EvaluationError, match="label column 'label' has 1 null row\\(s\\) among 3"):
        discrimination(frame)


def test_missing_score_column_is_named():
    frame = pl.DataFrame({"patient_id": [1], "label": [1]})

    with pytest.raises(EvaluationError, match="no column\\(s\\) 'risk' needed for discrimination"):
        discrimination(frame)


# --------------------------------------------------------------------------- calibration


def test_ece_is_zero_when_every_bin_is_perfectly_calibrated():
    frame = pl.DataFrame({"risk": [0.2] * 10 + [0.8] * 10, "label": [1, 1] + [0] * 8 + [1] * 8 + [0, 0]})

    result = calibration(frame, n_bins=2)

    assert result.ece == pytest.approx(0.0)
    assert result.reliability["mean_predicted"].to_list() == pytest.approx([0.2, 0.8])
    assert result.reliability["observed_rate"].to_list() == pytest.approx([0.2, 0.8])
    assert result.reliability["count"].to_list() == [10, 10]


def test_brier_ece_and_calibration_in_the_large_arithmetic():
    frame = pl.DataFrame({"risk": [0.1, 0.3, 0.6, 0.9], "label": [0, 1, 0, 1]})

    result = calibration(frame, n_bins=2)

    assert result.brier == pytest.approx((0.01 + 0.49 + 0.36 + 0.01) / 4)
    assert result.calibration_in_the_large == pytest.approx(0.475 - 0.5)
    # bins {0.1, 0.3}: predicted 0.2 vs observed 0.5; {0.6, 0.9}: 0.75 vs 0.5
    assert result.ece == pytest.approx(0.5 * 0.3 + 0.5 * 0.25)


def test_tied_risks_never_straddle_two_bins():
    # by position the bins would be {0.1, 0.2}, {0.3, 0.5}, {0.5, 0.9}
    frame = pl.DataFrame({"risk": [0.1, 0.2, 0.3, 0.5, 0.5, 0.9], "label": [0, 0, 1, 0, 1, 1]})

    result = calibration(frame, n_bins=3)

    assert result.reliability["count"].to_list() == [2, 3, 1]


def test_calibration_rejects_scores_that_are_not_probabilities():
    frame = pl.DataFrame({"news2": [0.5, 7.0], "label": [0, 1]})

    with pytest.raises(EvaluationError, match="score 'news2' has 1 row\\(s\\) outside \\[0, 1\\] among 2"):
        calibration(frame, score="news2")


# --------------------------------------------------------------------------- alert metrics


def test_on_off_on_within_an_encounter_is_two_alerts():
    frame = hourly("e1", [0.9, 0.9, 0.1, 0.9, 0.1, 0.1])

    result = alert_metrics(frame, threshold=0.5)

    assert result.n_alert_episodes == 2
    assert result.n_flagged_rows == 3


def test_a_flag_continuing_into_the_next_encounter_is_a_new_alert_whatever_the_row_order():
    frame = pl.concat([hourly("e1", [0.9, 0.9]), hourly("e2", [0.9, 0.9])]).reverse()

    result = alert_metrics(frame, threshold=0.5)

    assert result.n_alert_episodes == 2


def test_alerts_per_100_patient_days_is_episodes_over_rows_per_day():
    # 48 hourly rows = 2 patient-days; 3 episodes -> 150 alerts per 100 patient-days
    frame = pl.concat([hourly("e1", [0.9, 0.1] * 2 + [0.1] * 20), hourly("e2", [0.9] + [0.1] * 23)])

    result = alert_metrics(frame, threshold=0.5)

    assert result.patient_days == pytest.approx(2.0)
    assert result.alerts_per_100_patient_days == pytest.approx(150.0)
    assert result.promise == "risk >= 0.5: at most 150.0 alerts per 100 patient-days; PPV at least 0%"


def test_row_level_confusion_metrics_at_the_threshold():
    frame = hourly("e1", [0.9, 0.9, 0.1, 0.1, 0.9], labels=[1, 0, 1, 0, 1], event_hour=5)

    result = alert_metrics(frame, threshold=0.5)

    assert (result.true_positives, result.false_positives, result.true_negatives, result.false_negatives) == (2, 1, 1, 1)
    assert result.sensitivity == pytest.approx(2 / 3)
    assert result.specificity == pytest.approx(1 / 2)
    assert result.ppv == pytest.approx(2 / 3)
    assert result.npv == pytest.approx(1 / 2)
    assert result.flag_rate == pytest.approx(3 / 5)
    assert result.alert_ppv == pytest.approx(1.0)  # both episodes open on a label-1 hour


def test_lead_time_runs_from_the_first_flag_in_the_window_to_the_event():
    # event at hour 10; flags at hours 4 and 7-8: first flag 6 h before the event
    first = hourly("e1", [0.1] * 4 + [0.9] + [0.1] * 2 + [0.9, 0.9, 0.1], event_hour=10)
    # event at hour 6; first flag at hour 4: 2 h before
    second = hourly("e2", [0.1, 0.1, 0.1, 0.1, 0.9, 0.9], event_hour=6)

    result = alert_metrics(pl.concat([first, second]), threshold=0.5)

    assert result.n_event_encounters_detected == 2
    assert result.median_lead_time_hours == pytest.approx(4.0)


def test_flags_before_the_detection_window_do_not_detect_the_event():
    # flagged at hour 0 only; event at hour 30; window of 24 h starts at hour 6
    frame = hourly("e1", [0.9] + [0.1] * 29, event_hour=30)

    result = alert_metrics(frame, threshold=0.5, detection_window_hours=24)

    assert result.n_event_encounters_evaluable == 1
    assert result.n_event_encounters_detected == 0
    assert result.encounter_sensitivity == 0.0
    assert math.isnan(result.median_lead_time_hours)


def test_the_encounters_earliest_event_time_holds_for_all_its_rows():
    # event_time only on later rows, and two different ones: the first event (hour 3) counts
    frame = hourly("e1", [0.1, 0.1, 0.9, 0.1, 0.1]).with_columns(
        event_time=pl.Series([None, None, None, T0 + timedelta(hours=4), T0 + timedelta(hours=3)], dtype=UTC_US)
    )

    result = alert_metrics(frame, threshold=0.5)

    assert result.n_event_encounters_detected == 1
    assert result.median_lead_time_hours == pytest.approx(1.0)


def test_a_flag_at_the_event_hour_is_too_late_to_detect_it():
    frame = hourly("e1", [0.1, 0.1, 0.9], event_hour=2)

    result = alert_metrics(frame, threshold=0.5)

    assert result.n_event_encounters_detected == 0


def test_events_with_no_row_in_their_window_are_left_out_of_encounter_sensitivity():
    detected = hourly("e1", [0.1, 0.9], event_hour=2)
    event_before_any_row = hourly("e2", [0.1, 0.1], event_hour=-1)
    quiet = hourly("e3", [0.9, 0.1])

    result = alert_metrics(pl.concat([detected, event_before_any_row, quiet]), threshold=0.5)

    assert (result.n_event_encounters, result.n_event_encounters_evaluable) == (2, 1)
    assert result.encounter_sensitivity == 1.0
    assert result.nonevent_encounter_flag_rate == 1.0


def test_a_null_score_never_flags():
    frame = hourly("e1", [0.0, 0.0, 0.0]).with_columns(risk=pl.Series([None, 0.9, float("nan")]))

    result = alert_metrics(frame, threshold=0.5)

    assert result.n_flagged_rows == 1


# --------------------------------------------------------------------------- thresholds and baselines


def test_threshold_at_alert_rate_hits_the_rate_without_exceeding_it():
    # 4 encounters x 24 h = 4 patient-days; isolated flags at distinct scores
    frames = [hourly(f"e{i}", [0.0] * 24) for i in range(4)]
    scores = np.zeros(96)
    scores[[3, 10, 30, 50, 70, 90]] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    frame = pl.concat(frames).with_columns(risk=pl.Series(scores))

    threshold = threshold_at_alert_rate(frame, alerts_per_100_patient_days=100)  # 4 alerts

    assert threshold == pytest.approx(0.6)
    assert alert_metrics(frame, threshold=threshold).alerts_per_100_patient_days == pytest.approx(100)
    assert alert_metrics(frame, threshold=0.5).alerts_per_100_patient_days > 100


def test_threshold_at_alert_rate_stops_before_the_first_threshold_over_budget():
    # lowering the threshold from 0.8 to 0.7 gives 2 alerts, to 0.6 merges them back into 1;
    # the budget of 1 alert per 24 h stops at 0.8 rather than jumping to the merged 0.6
    frame = hourly("e1", [0.8, 0.6, 0.7] + [0.0] * 21)

    threshold = threshold_at_alert_rate(frame, alerts_per_100_patient_days=100)

    assert threshold == pytest.approx(0.8)


def test_compare_at_same_alert_rate_gives_the_model_no_more_alerts_than_the_baseline():
    rng = np.random.default_rng(5)
    frames = [
        hourly(f"e{i}", rng.random(24).tolist(), labels=(rng.random(24) < 0.2).astype(int).tolist(), event_hour=30)
        for i in range(10)
    ]
    frame = pl.concat(frames).with_columns(news2=pl.Series(rng.integers(0, 10, 240).astype(float)))

    result = compare_at_same_alert_rate(frame, baseline="news2", baseline_threshold=5)

    assert result.baseline_metrics.threshold == 5
    assert result.model_metrics.threshold == result.model_threshold
    assert 0 < result.model_metrics.alerts_per_100_patient_days <= result.baseline_metrics.alerts_per_100_patient_days


# --------------------------------------------------------------------------- PhysioNet 2019 utility


def septic_frame(labels: list[int], predictions: list[int], encounter: str = "s") -> pl.DataFrame:
    n = len(labels)
    return pl.DataFrame(
        {
            "encounter_id": [encounter] * n,
            "time": [T0 + timedelta(hours=h) for h in range(n)],
            "sepsis_label": labels,
            "flagged": predictions,
        },
        schema_overrides={"time": UTC_US},
    )


def best_predictions(labels: list[int]) -> list[int]:
    if 1 not in labels:
        return [0] * len(labels)
    t_sepsis = labels.index(1) + 6
    return [int(t_sepsis - 12 <= t <= t_sepsis + 3) for t in range(len(labels))]


def test_utility_of_perfect_predictions_is_one():
    septic = [0] * 20 + [1] * 10
    frame = pl.concat([septic_frame(septic, best_predictions(septic)), septic_frame([0] * 8, [0] * 8, "n")])

    assert predictions_utility(frame) == pytest.approx(1.0)


def test_utility_of_never_alarming_is_zero():
    frame = pl.concat([septic_frame([0] * 20 + [1] * 10, [0] * 30), septic_frame([0] * 8, [0] * 8, "n")])

    assert predictions_utility(frame) == pytest.approx(0.0)


def test_utility_of_the_challenges_worked_example_in_any_row_order():
    # t_sepsis = 10; observed 61/18, best 76/18, no alarms -4/18 -> (65/18) / (80/18)
    frame = septic_frame([0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1]).reverse()

    assert predictions_utility(frame) == pytest.approx(0.8125)


def test_utility_of_alarms_on_patients_without_sepsis_is_negative():
    # ten false alarms cost 10 * -0.05 against a best-minus-none span of 80/18
    frame = pl.concat([septic_frame([0, 0, 0, 0, 1, 1], [0] * 6), septic_frame([0] * 10, [1] * 10, "n")])

    assert predictions_utility(frame) == pytest.approx(-0.5 / (80 / 18))


def test_an_alarm_long_before_onset_costs_like_a_false_alarm():
    # first label at hour 20, t_sepsis = 26; an alarm at hour 0 (dt = -26) earns U_FP = -0.05;
    # best = 3.5 (dt -12..-6) + 4 (dt -5..3) = 7.5, no alarms = -10 (missed dt -5..3)
    predictions = [1] + [0] * 29

    utility = predictions_utility(septic_frame([0] * 20 + [1] * 10, predictions))

    assert utility == pytest.approx(-0.05 / 17.5)


def test_utility_without_any_septic_encounter_raises():
    with pytest.raises(EvaluationError, match="no encounter has 'sepsis_label' = 1 among 1 encounters"):
        predictions_utility(septic_frame([0] * 5, [1] * 5))


# --------------------------------------------------------------------------- the report


def report_frame() -> pl.DataFrame:
    rng = np.random.default_rng(11)
    frames = []
    for i in range(30):
        has_event = i % 3 == 0
        labels = [int(has_event and h >= 14) for h in range(20)]
        risk = np.clip(rng.random(20) * 0.5 + 0.4 * np.array(labels), 0, 1)
        frames.append(
            hourly(f"e{i}", risk.tolist(), labels=labels, event_hour=20 if has_event else None, patient=f"p{i // 2}")
        )
    frame = pl.concat(frames)
    return frame.with_columns(
        news2=pl.Series(rng.integers(0, 9, frame.height).astype(float)),
        sepsis_label=pl.col("label"),
    )


def test_evaluate_to_dict_is_json_serialisable_with_nan_as_none():
    frame = report_frame()

    report = evaluate(frame, threshold=0.99, n_boot=20)  # nothing flagged: PPV is NaN
    as_dict = report.to_dict()

    json.dumps(as_dict, allow_nan=False)
    assert as_dict["operating_point"]["ppv"] is None
    assert set(as_dict["discrimination"]) == {"risk", "news2"}
    assert set(as_dict["utility"]) == {"risk", "news2", "risk @ news2 alert rate"}


def test_evaluate_markdown_has_a_section_per_question():
    report = evaluate(report_frame(), threshold=0.5, n_boot=20, outcome="sepsis within 6 h")

    text = report.to_markdown()

    for heading in (
        "# Evaluation: sepsis within 6 h",
        "## Discrimination",
        "## Calibration (risk)",
        "## Operating point (risk >= 0.5)",
        "### news2 >= 5",
        "## PhysioNet 2019 utility",
    ):
        assert heading in text
    assert report.operating_point.promise in text


def test_evaluate_counts_patients_not_encounters_for_the_bootstrap():
    report = evaluate(report_frame(), threshold=0.5, n_boot=10)

    assert (report.n_encounters, report.n_patients) == (30, 15)
    assert report.discrimination["risk"].n_clusters == 15


def test_evaluate_names_a_missing_baseline_column_and_how_to_skip_it():
    frame = report_frame().drop("news2")

    with pytest.raises(EvaluationError, match="baseline column\\(s\\) 'news2' not in the predictions frame .*baselines=\\{\\}"):
        evaluate(frame, threshold=0.5)

    assert evaluate(frame, threshold=0.5, baselines={}, n_boot=0).comparisons == {}
