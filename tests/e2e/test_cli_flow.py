"""The whole flow through the real `riskcast` command, on a small synthetic cohort."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.slow


def run(home: Path, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the installed riskcast command with its own home; JSON output."""
    command = [sys.executable, "-m", "riskcast", "--home", str(home), "--json", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, input=stdin)
    if check and result.returncode != 0:
        raise AssertionError(f"riskcast {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    cohort = home / "cohort"
    run(home, "synth", "--encounters", "600", "--seed", "3", "--out", str(cohort))
    first = json.loads(run(home, "ingest", str(cohort)).stdout)
    assert first["batch_id"] and first["total_accepted"] > 10_000
    assert first["total_quarantined"] > 0
    run(home, "train", "--alerts-per-100-patient-days", "20", "--test-fraction", "0.3")
    return home


def test_reingesting_the_same_cohort_is_a_noop(trained_home: Path) -> None:
    again = json.loads(run(trained_home, "ingest", str(trained_home / "cohort")).stdout)
    assert again["already_ingested"] is True
    assert again["batch_id"] is None
    assert len(list((trained_home / "lake" / "batches").glob("*.json"))) == 1


def test_quarantine_lists_file_line_and_rule_without_values(trained_home: Path) -> None:
    listed = json.loads(run(trained_home, "quarantine", "--limit", "5").stdout)
    assert listed["total"] > 0
    row = listed["rows"][0]
    assert row["source_file"].endswith(".parquet") and row["source_line"] >= 1 and row["rule"]


def test_features_command_writes_a_labelled_matrix(trained_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    run(trained_home, "features", "--out", str(out), "--outcome", "deterioration")
    frame = pl.read_parquet(out)
    assert {"encounter_id", "time", "news2", "heart_rate_last", "label"} <= set(frame.columns)
    assert frame.filter(pl.col("label") == 1).height > 0


def test_scoring_an_hour_twice_writes_nothing_new(trained_home: Path) -> None:
    first = json.loads(run(trained_home, "score", "--at", "2026-01-15T12:00Z").stdout)
    second = json.loads(run(trained_home, "score", "--at", "2026-01-15T12:00Z").stdout)
    assert first["admitted"] > 0 and first["written"] == first["admitted"]
    assert second["written"] == 0


def test_scoring_long_after_the_data_is_insufficient_not_low_risk(trained_home: Path) -> None:
    late = json.loads(run(trained_home, "score", "--at", "2026-01-17T12:00Z").stdout)
    assert late["admitted"] > 0
    assert late["scored"] == 0 and late["insufficient_data"] == late["admitted"]
    assert late["flagged"] == 0


def test_predict_on_another_sites_data_uses_a_scratch_workspace(trained_home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-site"
    run(trained_home, "synth", "--encounters", "200", "--seed", "11", "--out", str(other), "--format", "csv")
    out = tmp_path / "predictions.csv"
    meta = json.loads(run(trained_home, "predict", "--data", str(other), "--out", str(out)).stdout)
    predictions = pl.read_csv(out)
    assert set(predictions.columns) >= {"encounter_id", "time", "risk", "flagged"}
    assert meta["rows"] == predictions.height > 0
    live_batches = list((trained_home / "lake" / "batches").glob("*.json"))
    assert len(live_batches) == 1, "external data must never enter the live lake"


def test_evaluate_on_external_data_reports_the_model_and_news2(trained_home: Path, tmp_path: Path) -> None:
    other = tmp_path / "external"
    run(trained_home, "synth", "--encounters", "300", "--seed", "12", "--out", str(other))
    report = json.loads(run(trained_home, "evaluate", "--data", str(other), "--bootstrap", "20").stdout)
    discrimination = report["evaluation"]["discrimination"]
    assert "risk" in discrimination and "NEWS2" in discrimination
    assert 0.5 < discrimination["risk"]["auroc"] <= 1.0


def test_expected_mistakes_are_one_line_and_exit_1(tmp_path: Path) -> None:
    result = run(tmp_path, "ingest", str(tmp_path / "missing.csv"), check=False)
    assert result.returncode == 1
    assert "missing.csv" in result.stderr and "Traceback" not in result.stderr
    result = run(tmp_path, "score", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_demo_runs_end_to_end_without_serving(tmp_path: Path) -> None:
    summary = json.loads(run(tmp_path, "demo", "--encounters", "500", "--no-serve").stdout)
    assert summary["model_version"].startswith("v0001")
    assert summary["score"]["admitted"] > 0
    assert 0.0 <= summary["evaluation"]["model_auroc"] <= 1.0  # 500 encounters: too few events to judge quality
    assert Path(summary["report"]).exists()


def test_scoring_raises_alerts_that_staff_acknowledge_from_the_command_line(trained_home: Path) -> None:
    scored = json.loads(run(trained_home, "score", "--at", "2026-01-15T11:00Z").stdout)
    assert scored["alerts"] is not None, "the champion's scores go through the alert policy"
    open_alerts = json.loads(run(trained_home, "alerts", "list").stdout)["alerts"]
    assert open_alerts, "a 600-encounter cohort has patients above the threshold"
    first = open_alerts[0]
    password = "Quartz-Heron-Lantern-71!\n"
    run(trained_home, "users", "add", "sam", "--role", "nurse", "--ward", first["ward"], "--password-stdin", "--replace",
        stdin=password)
    acked = json.loads(
        run(trained_home, "alerts", "ack", str(first["alert_id"]), "--user", "sam", "--password-stdin", "--reason", "seen",
            stdin=password).stdout
    )
    assert acked["state"] == "acknowledged"
    history = json.loads(run(trained_home, "alerts", "history", first["encounter_id"]).stdout)["events"]
    assert [e["action"] for e in history if e["alert_id"] == first["alert_id"]][-1] == "acknowledged"
    assert any(e["actor"] == "sam" and e["role"] == "nurse" and e["reason"] == "seen" for e in history)
    rescored = json.loads(run(trained_home, "score", "--at", "2026-01-15T11:00Z").stdout)
    assert rescored["written"] == 0 and rescored["alerts"]["raised"] == 0


def test_a_resolve_without_a_reason_is_refused(trained_home: Path) -> None:
    result = run(trained_home, "alerts", "resolve", "1", "--user", "sam", check=False)
    assert result.returncode == 2 and "--reason" in result.stderr
