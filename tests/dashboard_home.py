"""The small dashboard home the dashboard's tests share, and the helpers that drive its app.

A lake with two wards' encounters and observations, a tiny registered champion (trained on
random numbers: only its version and threshold matter here), hand-written hourly scores with
drivers, and alerts raised from them by the real alert state machine. Times are around
2026-01-15 12:00 UTC. Test files import the fixtures they use (`home`, `engine`, `writable`,
`app`) by name; each test module builds its own home once.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sqlalchemy import insert

from riskcast.alerts.policy import AlertPolicy, PolicySet
from riskcast.alerts.state import list_alerts, process_scores
from riskcast.config import Settings
from riskcast.contracts import QUARANTINE_SCHEMA
from riskcast.dashboards import auth
from riskcast.dashboards.app import create_app
from riskcast.lake import LAKE_SCHEMAS, Lake
from riskcast.model import ModelRegistry, RiskModel
from riskcast.store import finish_run, open_store, start_run, write_quarantine, write_scores
from riskcast.store.tables import job_runs, users

HOUR = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
NOW = HOUR + timedelta(minutes=10)
WARD_A, WARD_B = "north-medical-1", "south-surgical-6"
POLICY = PolicySet(default=AlertPolicy(raise_threshold=0.20, clear_threshold=0.15, escalate_after_minutes=600))
PASSWORD = "correct horse battery"
UTC_US = pl.Datetime("us", "UTC")


def hour_plus(offset: float) -> datetime:
    """HOUR plus `offset` hours."""
    return HOUR + timedelta(hours=offset)


def _lake(settings: Settings) -> None:
    """Five encounters on two wards; vitals and labs for E1, old vitals for E2."""
    encounters = pl.DataFrame(
        {
            "encounter_id": ["E1", "E2", "E3", "E4", "E5"],
            "patient_id": ["P1", "P2", "P3", "P4", "P5"],
            "admit_time": [hour_plus(-72)] * 5,
            "discharge_time": [None, None, None, None, hour_plus(-0.5)],
            "ward": [WARD_A, WARD_A, WARD_A, WARD_B, WARD_A],
            "site": ["north"] * 5,
        },
        schema=LAKE_SCHEMAS["encounters"],
    )
    rows = [
        ("E1", hour_plus(-30), "resp_rate", 16.0, "/min"),
        ("E1", hour_plus(-2), "resp_rate", 24.0, "/min"),
        ("E1", hour_plus(-0.5), "resp_rate", 28.0, "/min"),
        ("E1", hour_plus(-0.5), "heart_rate", 112.0, "/min"),
        ("E1", hour_plus(-20), "creatinine", 90.0, "umol/L"),
        ("E1", hour_plus(-1), "creatinine", 140.0, "umol/L"),
        ("E2", hour_plus(-9), "heart_rate", 80.0, "/min"),
        ("E4", hour_plus(-0.25), "heart_rate", 95.0, "/min"),
    ]
    observations = pl.DataFrame(
        [(e, t, v, x, u, "test") for e, t, v, x, u in rows], schema=LAKE_SCHEMAS["observations"], orient="row"
    )
    Lake(settings.lake_dir).commit_batch(
        "20260115T120000-test0001",
        {"encounters": encounters, "observations": observations},
        pl.DataFrame(schema=QUARANTINE_SCHEMA),
        sources=[],
        created_at=NOW,
    )


def _champion(settings: Settings) -> str:
    """A tiny fitted model, registered and promoted: the dashboard shows its version's scores."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(600, 2)), columns=["a", "b"])
    y = (X["a"] + rng.normal(size=600) > 1.2).astype(int).to_numpy()
    model = RiskModel(device="cpu", n_jobs=1, n_estimators=20).fit(X, y, groups=np.repeat(np.arange(60), 10))
    registry = ModelRegistry(settings.models_dir)
    version = registry.register(model, metadata={"intended_use": "tests", "limits": []}, now=HOUR)
    registry.promote(version, by="tests", reason="fixture", now=HOUR)
    return version


def _score_frames(hour: datetime, rows: list[tuple[str, float | None, str, str]]) -> pl.DataFrame:
    ward_of = {"E1": WARD_A, "E2": WARD_A, "E3": WARD_A, "E4": WARD_B, "E5": WARD_A}
    return pl.DataFrame(
        [(e, f"P{e[1:]}", ward_of[e], "north", hour, risk, status, missing) for e, risk, status, missing in rows],
        schema={"encounter_id": pl.String, "patient_id": pl.String, "ward": pl.String, "site": pl.String,
                "scored_at": UTC_US, "risk": pl.Float64, "status": pl.String, "missing": pl.String},
        orient="row",
    )  # fmt: skip


def _drivers(rows: list[tuple[str, datetime, int, str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(e, t, rank, var, f"{var}_last", text, c, None) for e, t, rank, var, text, c in rows],
        schema={"encounter_id": pl.String, "scored_at": UTC_US, "rank": pl.Int64, "variable": pl.String,
                "feature": pl.String, "text": pl.String, "contribution": pl.Float64, "value": pl.Float64},
        orient="row",
    )  # fmt: skip


def _scores(settings: Settings, version: str) -> None:
    """Hours -24, -1 and 0. E1 rises into an alert; E2's vitals go stale at 0; E3 stays low;
    E4 (ward B) is high; E5 was discharged before 0 (scored at -1 only)."""
    engine = open_store(settings.database_url)
    hours = {
        hour_plus(-24): [("E1", 0.05, "scored", ""), ("E2", 0.04, "scored", ""), ("E3", 0.02, "scored", "")],
        hour_plus(-1): [("E1", 0.25, "scored", ""), ("E2", 0.06, "scored", ""), ("E3", 0.02, "scored", ""),
                     ("E4", 0.50, "scored", ""), ("E5", 0.03, "scored", "")],
        hour_plus(0): [("E1", 0.45, "scored", ""), ("E2", None, "insufficient_data", "resp_rate,spo2"),
                    ("E3", 0.025, "scored", ""), ("E4", 0.60, "scored", "")],
    }  # fmt: skip
    drivers = {
        hour_plus(-24): [("E1", hour_plus(-24), 1, "heart_rate", "Heart rate 90 /min (+0.10)", 0.10),
                      ("E1", hour_plus(-24), 2, "creatinine", "Creatinine 90 µmol/L (+0.05)", 0.05)],
        hour_plus(-1): [],
        hour_plus(0): [("E1", hour_plus(0), 1, "resp_rate", "Respiratory rate 28 /min, rising (+0.60)", 0.60),
                    ("E1", hour_plus(0), 2, "heart_rate", "Heart rate 112 /min (+0.30)", 0.30),
                    ("E4", hour_plus(0), 1, "sbp", "Systolic blood pressure 88 mmHg (+0.50)", 0.50)],
    }  # fmt: skip
    for hour, rows in hours.items():
        frame = _score_frames(hour, rows)
        run_id = start_run(engine, "score", now=hour + timedelta(minutes=5), model_version=version)
        write_scores(engine, run_id, version, frame, _drivers(drivers[hour]), now=hour + timedelta(minutes=5))
        finish_run(engine, run_id, status="succeeded", now=hour + timedelta(minutes=6))
        process_scores(engine, frame.with_columns(pl.lit(version).alias("model_version")), policy_set=POLICY,
                       model_threshold=None, now=hour + timedelta(minutes=5))  # fmt: skip
    quarantined = pl.DataFrame(
        {"table": ["observations", "observations", "patients"], "source_file": ["obs.csv"] * 3, "source_line": [3, 9, 4],
         "rule": ["out_of_range", "out_of_range", "unparseable_value"], "detail": ["x"] * 3, "record": ["{}"] * 3}
    )  # fmt: skip
    write_quarantine(engine, "20260115T120000-test0001", quarantined, now=NOW)
    with engine.begin() as connection:
        connection.execute(
            insert(job_runs).values(job="ingest", scheduled_for=hour_plus(0.1), started_at=hour_plus(0.1),
                                    finished_at=hour_plus(0.15), status="failed", counts={}, error="IngestError: feed.csv\nmore")
        )  # fmt: skip
    engine.dispose()


@dataclass(frozen=True)
class Home:
    settings: Settings
    version: str


def _build(path: Path) -> Home:
    settings = Settings(home=path)
    _lake(settings)
    version = _champion(settings)
    _scores(settings, version)
    return Home(settings, version)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A read-only home shared by the tests that only read."""
    return _build(tmp_path_factory.mktemp("dashboard-home"))


@pytest.fixture(scope="module")
def engine(home: Home) -> Iterator[Any]:
    engine = open_store(home.settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def writable(home: Home, tmp_path: Path) -> Home:
    """A copy of the home for tests that change alerts or users (no session key, no users)."""
    copy = tmp_path / "home"
    shutil.copytree(home.settings.home, copy, ignore=shutil.ignore_patterns(auth.SECRET_KEY_FILE))
    engine = open_store(Settings(home=copy).database_url)
    with engine.begin() as connection:
        connection.execute(users.delete())
    engine.dispose()
    return Home(Settings(home=copy), home.version)


def risk_alert_of(engine: Any, encounter_id: str) -> int:
    """The id of the encounter's risk alert."""
    frame = list_alerts(engine).filter(pl.col("encounter_id") == encounter_id, pl.col("kind") == "risk")
    return int(frame["alert_id"][0])


# --------------------------------------------------------------------------- the web app


@pytest.fixture(scope="module")
def app(home: Home) -> Any:
    """The dashboard over the home, on a clock stopped at NOW, with nina (nurse, ward A), adam
    (admin) and dana (data scientist), all with PASSWORD."""
    application = create_app(home.settings, clock=lambda: NOW, policy_set=POLICY)
    engine = application.server.extensions["riskcast"].engine
    for name, role, wards in [("nina", "nurse", [WARD_A]), ("adam", "admin", []), ("dana", "data_scientist", [])]:
        auth.add_user(engine, name, role=role, wards=wards, password=PASSWORD, now=NOW, replace=True)
    return application


def sign_in(client: Any, username: str, password: str = PASSWORD) -> Any:
    """Sign in through the form, with its token, as a browser would."""
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"csrf": token, "username": username, "password": password})


def dash_call(client: Any, output_contains: str, inputs: dict[str, Any], state: dict[str, Any] | None = None) -> Any:
    """Call the callback whose output names `output_contains`, as the Dash renderer would."""
    dependencies = json.loads(client.get("/_dash-dependencies").get_data())
    spec = next(d for d in dependencies if output_contains in d["output"])

    def values(items: list[dict[str, str]], given: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**item, "value": given.get(f"{item['id']}.{item['property']}")} for item in items]

    outputs = [dict(zip(("id", "property"), part.rsplit(".", 1), strict=True)) for part in spec["output"].strip(".").split("...")]
    payload = {
        "output": spec["output"],
        "outputs": outputs,
        "inputs": values(spec["inputs"], inputs),
        "state": values(spec["state"], state or {}),
        "changedPropIds": [f"{spec['inputs'][0]['id']}.{spec['inputs'][0]['property']}"],
    }
    return client.post("/_dash-update-component", json=payload)
