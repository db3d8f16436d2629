"""PhysioNet 2019 files end to end through the command line: train a sepsis model, predict
another folder of files with exactly one prediction per line (keyed by file and ICULOS, and as
.psv files the challenge's scorer reads), evaluate it there with its transport figures, and
recalibrate it on that site's first patients as a new, unpromoted version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from riskcast.ingest.physionet import EXPECTED_COLUMNS
from riskcast.utility import physionet_utility

pytestmark = pytest.mark.slow
HEADER = "|".join(EXPECTED_COLUMNS)


def run(home: Path, *args: str, check: bool = True, as_json: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "RISKCAST_HOME": str(home)}
    command = [sys.executable, "-m", "riskcast", *(["--json"] if as_json else []), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"riskcast {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def write_stays(folder: Path, n: int, *, seed: int, first_id: int) -> dict[str, int]:
    """n synthetic stays in the challenge's format, a third of them septic (heart rate, breathing
    and lactate worsen over the 12 h before onset); some start at ICULOS 3. Returns lines per file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    lines_per_file = {}
    for k in range(n):
        hours = int(rng.integers(20, 50))
        start = 3 if k % 7 == 0 else 1
        septic = rng.random() < 0.35
        onset = int(rng.integers(14, hours + 4)) if septic else None
        unit1 = 1 if k % 2 else 0
        rows = []
        for h in range(start, start + hours):
            worse = max(0.0, 12 - (onset - h)) if onset is not None and h <= onset + 6 else 0.0
            values = {column: "NaN" for column in EXPECTED_COLUMNS}
            values.update({"Age": 60 + k % 25, "Gender": k % 2, "Unit1": unit1, "Unit2": 1 - unit1, "HospAdmTime": -3.5,
                           "ICULOS": h, "SepsisLabel": int(onset is not None and h >= onset - 6)})
            values["HR"] = round(80 + 3.0 * worse + rng.normal(0, 6), 1)
            values["Resp"] = round(16 + 0.8 * worse + rng.normal(0, 2), 1)
            values["O2Sat"] = round(97 - 0.4 * worse + rng.normal(0, 1), 1)
            values["SBP"] = round(125 - 2.0 * worse + rng.normal(0, 8), 1)
            values["Temp"] = round(37 + 0.08 * worse + rng.normal(0, 0.3), 2) if h % 4 == 0 else "NaN"
            if h % 6 == 0:
                values["Lactate"] = round(1.2 + 0.25 * worse + abs(rng.normal(0, 0.3)), 2)
            rows.append("|".join(str(values[c]) for c in EXPECTED_COLUMNS))
        name = f"p{first_id + k:06d}.psv"
        (folder / name).write_text("\n".join([HEADER, *rows]) + "\n")
        lines_per_file[name] = len(rows)
    return lines_per_file


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int]]:
    base = tmp_path_factory.mktemp("physionet")
    home = base / "home"
    write_stays(base / "training_setA", 260, seed=1, first_id=1)
    other = base / "training_setB"
    lines = write_stays(other, 120, seed=2, first_id=100001)
    run(home, "ingest", str(base / "training_setA"))
    trained = json.loads(run(home, "train", "--outcome", "sepsis", "--horizon-hours", "6", "--no-ablations").stdout)
    assert trained["promoted"]
    return home, other, lines


def test_a_sepsis_model_chooses_its_threshold_by_the_utility(trained):
    home, _, _ = trained
    card = json.loads(next((home / "models").glob("v0001-*/model_card.json")).read_text())
    assert card["model"]["threshold_rule"] == "utility"
    assert card["other"]["operating_point"]["rule"] == "utility"
    assert "PhysioNet/CinC 2019 utility" in card["other"]["operating_point"]["why"]
    assert card["data"]["description"]["labels"]["keep_after_event"] is True


def test_predict_writes_one_prediction_per_source_line_keyed_by_file_and_iculos(trained, tmp_path):
    home, other, lines = trained
    out = tmp_path / "predictions.csv"
    meta = json.loads(run(home, "predict", "--data", str(other), "--out", str(out)).stdout)
    predictions = pl.read_csv(out)
    assert predictions.height == meta["rows"] == meta["source_rows"] == sum(lines.values())
    per_file = predictions.group_by("file_name").len()
    assert dict(per_file.iter_rows()) == lines
    # in the files' order, line by line, each matched to its own ICULOS
    first = predictions.filter(pl.col("file_name") == "p100001.psv")
    assert first["line"].to_list() == list(range(2, lines["p100001.psv"] + 2))
    assert first["iculos"].to_list() == list(range(3, lines["p100001.psv"] + 3))  # this stay starts at ICULOS 3
    assert predictions["risk"].null_count() == 0
    assert set(predictions["data_status"]) <= {"scored", "insufficient_data"}


def test_predict_format_physionet_writes_files_the_challenges_scorer_reads(trained, tmp_path):
    home, other, lines = trained
    out = tmp_path / "predictions"
    run(home, "predict", "--data", str(other), "--out", str(out), "--format", "physionet")
    assert sorted(p.name for p in out.iterdir()) == sorted(lines)
    labels, alarms, stays = [], [], []
    for name, n in lines.items():
        text = (out / name).read_text().splitlines()
        assert text[0] == "PredictedProbability|PredictedLabel"
        rows = [line.split("|") for line in text[1:]]
        assert len(rows) == n and all(len(r) == 2 for r in rows)
        probability = np.array([float(r[0]) for r in rows])
        label = np.array([int(r[1]) for r in rows])
        assert ((0 <= probability) & (probability <= 1)).all() and set(label) <= {0, 1}
        if 0 < label.sum() < len(label):  # the scorer warns when a positive has a lower probability
            assert probability[label == 1].min() > probability[label == 0].max()
        source = (other / name).read_text().splitlines()
        column = source[0].split("|").index("SepsisLabel")
        labels += [int(line.split("|")[column]) for line in source[1:]]
        alarms += list(label)
        stays += [name] * n
    # the challenge's utility of these files, as its scorer would compute it, is a real number
    utility = physionet_utility(np.array(labels), np.array(alarms, dtype=bool), np.array(stays))
    assert -2 < utility <= 1


def test_predict_format_physionet_refuses_a_folder_that_holds_files(trained, tmp_path):
    home, other, _ = trained
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.psv").write_text("x")
    result = run(home, "predict", "--data", str(other), "--out", str(tmp_path / "full"), "--format", "physionet", check=False)
    assert result.returncode != 0 and "not an empty folder" in result.stderr and "Traceback" not in result.stderr


def test_evaluate_at_another_site_says_how_calibration_and_the_threshold_transport(trained):
    home, other, lines = trained
    report = json.loads(run(home, "evaluate", "--data", str(other), "--bootstrap", "20").stdout)
    assert report["rows"] == sum(lines.values())  # exactly the challenge's rows, none added before them
    transport = report["transport"]
    assert {"calibration_in_the_large", "alerts_per_100_patient_days", "flag_rate", "utility"} <= set(transport)
    assert -1 < transport["calibration_in_the_large"] < 1 and transport["utility"] is not None
    assert report["promise_check"] is not None and "kept" in report["promise_check"]
    text = run(home, "evaluate", "--data", str(other), "--bootstrap", "0", as_json=False).stdout
    assert "## At this site" in text and "calibration-in-the-large" in text and "recalibrate" in text


def test_recalibrate_registers_a_new_unpromoted_version_recorded_in_its_card(trained):
    home, other, _ = trained
    result = json.loads(run(home, "recalibrate", "--data", str(other), "--first-patients", "40").stdout)
    assert result["from_version"].startswith("v0001-") and result["patients"] == 40
    models = json.loads(run(home, "models", "list").stdout)["versions"]
    champion = [v["version"] for v in models if v["champion"]]
    assert result["version"] not in champion
    card = json.loads((home / "models" / result["version"] / "model_card.json").read_text())
    assert card["other"]["recalibration"]["data"] == str(other)
    assert card["other"]["recalibration"]["chosen_as"] == "the site's first patients by admission time"


def test_the_utility_operating_point_promises_the_utility_it_reached(trained):
    home, other, _ = trained
    version = next((home / "models").glob("v0001-*"))
    promise = json.loads((version / "promise.json").read_text())
    assert promise["rule"] == "utility" and 0 < promise["utility"] <= 1
    assert "PhysioNet 2019 utility at least" in promise["text"]
    report = json.loads(run(home, "evaluate", "--data", str(other), "--bootstrap", "0").stdout)
    check = report["promise_check"]
    assert check["promised_utility"] == pytest.approx(promise["utility"])
    assert check["kept"] == check["utility_kept"] == (check["observed_utility"] >= promise["utility"] * 0.8)
