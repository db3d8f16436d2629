"""The model earns its place: on the demo's synthetic cohort it beats NEWS2 on held-out patients."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.training import train_and_register
from riskcast.synth import generate_cohort, write_cohort

pytestmark = pytest.mark.slow
NOW = datetime(2026, 2, 1, tzinfo=UTC)


def test_held_out_auroc_is_at_least_080_and_sensitivity_beats_news2_at_its_alert_rate(tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    write_cohort(generate_cohort(3000, seed=7), cohort)
    lake = Lake(tmp_path / "lake")
    ingest_paths([cohort], lake=lake, now=NOW)
    result = train_and_register(lake, ModelRegistry(tmp_path / "models"), now=NOW, n_boot=0, seed=7, ablations=False)
    report = result.report.to_dict()
    model = report["discrimination"]["risk"]
    news2 = report["discrimination"]["NEWS2"]
    assert model["auroc"] >= 0.80
    assert model["auroc"] > news2["auroc"]
    at_news2_rate = report["comparisons"]["NEWS2"]
    assert (
        at_news2_rate["model_metrics"]["alerts_per_100_patient_days"]
        <= at_news2_rate["baseline_metrics"]["alerts_per_100_patient_days"]
    )
    assert at_news2_rate["model_metrics"]["sensitivity"] > at_news2_rate["baseline_metrics"]["sensitivity"]
