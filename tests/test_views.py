"""The dashboard without a browser: its read models, sign-in, the gate, alert actions, the
access log and the `riskcast users` command.

A small home is built in the test: a lake with two wards' encounters and observations, a
tiny registered champion (trained on random numbers: only its version and threshold
matter here), hand-written hourly scores with drivers, and alerts raised from them by the
real alert state machine. Times are around 2026-01-15 12:00 UTC.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select
from werkzeug.serving import make_server

from riskcast.alerts.policy import AlertPolicy, PolicySet
from riskcast.alerts.state import alert_history, list_alerts, process_scores
from riskcast.cli import cli
from riskcast.config import Settings
from riskcast.contracts import QUARANTINE_SCHEMA
from riskcast.dashboards import auth
from riskcast.dashboards.access_log import redact_path
from riskcast.dashboards.actions import act_on_alert
from riskcast.dashboards.app import create_app
from riskcast.errors import ConfigError
from riskcast.lake import LAKE_SCHEMAS, Lake
from riskcast.model import ModelRegistry, RiskModel
from riskcast.pipeline import views
from riskcast.store import finish_run, open_store, start_run, write_quarantine, write_scores
from riskcast.store.tables import job_runs, users

HOUR = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
NOW = HOUR + timedelta(minutes=10)
WARD_A, WARD_B = "north-medical-1", "south-surgical-6"
POLICY = PolicySet(default=AlertPolicy(raise_threshold=0.20, clear_threshold=0.15, escalate_after_minutes=600))
PASSWORD = "correct horse battery"
UTC_US = pl.Datetime("us", "UTC")


# ------------------------------------------------------------------------------- the home


def _hours(offset: float) -> datetime:
    return HOUR + timedelta(hours=offset)


def _lake(settings: Settings) -> None:
    """Five encounters on two wards; vitals and labs for E1, old vitals for E2."""
    encounters = pl.DataFrame(
        {
            "encounter_id": ["E1", "E2", "E3", "E4", "E5"],
            "patient_id": ["P1", "P2", "P3", "P4", "P5"],
            "admit_time": [_hours(-72)] * 5,
            "discharge_time": [None, None, None, None, _hours(-0.5)],
            "ward": [WARD_A, WARD_A, WARD_A, WARD_B, WARD_A],
            "site": ["north"] * 5,
        },
        schema=LAKE_SCHEMAS["encounters"],
    )
    rows = [
        ("E1", _hours(-30), "resp_rate", 16.0, "/min"),
        ("E1", _hours(-2), "resp_rate", 24.0, "/min"),
        ("E1", _hours(-0.5), "resp_rate", 28.0, "/min"),
        ("E1", _hours(-0.5), "heart_rate", 112.0, "/min"),
        ("E1", _hours(-20), "creatinine", 90.0, "umol/L"),
        ("E1", _hours(-1), "creatinine", 140.0, "umol/L"),
        ("E2", _hours(-9), "heart_rate", 80.0, "/min"),
        ("E4", _hours(-0.25), "heart_rate", 95.0, "/min"),
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
        _hours(-24): [("E1", 0.05, "scored", ""), ("E2", 0.04, "scored", ""), ("E3", 0.02, "scored", "")],
        _hours(-1): [("E1", 0.25, "scored", ""), ("E2", 0.06, "scored", ""), ("E3", 0.02, "scored", ""),
                     ("E4", 0.50, "scored", ""), ("E5", 0.03, "scored", "")],
        _hours(0): [("E1", 0.45, "scored", ""), ("E2", None, "insufficient_data", "resp_rate,spo2"),
                    ("E3", 0.025, "scored", ""), ("E4", 0.60, "scored", "")],
    }  # fmt: skip
    drivers = {
        _hours(-24): [("E1", _hours(-24), 1, "heart_rate", "Heart rate 90 /min (+0.10)", 0.10),
                      ("E1", _hours(-24), 2, "creatinine", "Creatinine 90 µmol/L (+0.05)", 0.05)],
        _hours(-1): [],
        _hours(0): [("E1", _hours(0), 1, "resp_rate", "Respiratory rate 28 /min, rising (+0.60)", 0.60),
                    ("E1", _hours(0), 2, "heart_rate", "Heart rate 112 /min (+0.30)", 0.30),
                    ("E4", _hours(0), 1, "sbp", "Systolic blood pressure 88 mmHg (+0.50)", 0.50)],
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
            insert(job_runs).values(job="ingest", scheduled_for=_hours(0.1), started_at=_hours(0.1),
                                    finished_at=_hours(0.15), status="failed", counts={}, error="IngestError: feed.csv\nmore")
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


def board(home: Home, engine: Any, **options: Any) -> pl.DataFrame:
    return views.ward_board(engine, model_version=home.version, now=NOW, lake=Lake(home.settings.lake_dir), **options)


# ------------------------------------------------------------------------------ read models


def test_board_lists_only_patients_scored_in_the_latest_run(home, engine):
    assert sorted(board(home, engine)["encounter_id"]) == ["E1", "E2", "E3", "E4"]


def test_board_puts_alerts_needing_action_first_then_insufficient_data_then_by_risk(home, engine):
    assert board(home, engine)["encounter_id"].to_list() == ["E4", "E1", "E2", "E3"]


def test_stale_vitals_are_insufficient_not_low_risk(home, engine):
    row = board(home, engine).filter(pl.col("encounter_id") == "E2").row(0, named=True)
    assert row["status"] == "insufficient_data"
    assert row["risk"] is None and row["trend"] is None
    assert row["missing"] == "Respiratory rate, Oxygen saturation (SpO2)"


def test_trend_compares_the_latest_score_with_the_previous_hour(home, engine):
    rows = {r["encounter_id"]: r for r in board(home, engine).iter_rows(named=True)}
    assert rows["E1"]["trend"] == "rising" and rows["E1"]["risk_change"] == pytest.approx(0.20)
    assert rows["E3"]["trend"] == "steady"
    assert rows["E4"]["previous_risk"] == pytest.approx(0.50)


def test_board_of_one_ward_shows_neither_patients_nor_alerts_of_another(home, engine):
    ward_a = board(home, engine, wards=[WARD_A])
    assert set(ward_a["ward"]) == {WARD_A}
    assert "E4" not in ward_a["encounter_id"].to_list()


def test_board_shows_the_open_alert_and_top_drivers_in_words(home, engine):
    row = board(home, engine).filter(pl.col("encounter_id") == "E1").row(0, named=True)
    assert row["alert_kind"] == "risk" and row["alert_state"] == "new" and row["needs_action"]
    assert row["drivers"] == "Respiratory rate 28 /min, rising (+0.60); Heart rate 112 /min (+0.30)"


def test_last_observed_is_the_latest_essential_vital_and_its_age_now(home, engine):
    row = board(home, engine).filter(pl.col("encounter_id") == "E1").row(0, named=True)
    assert row["last_observed_at"] == _hours(-0.5)
    assert row["hours_since_observed"] == pytest.approx((NOW - _hours(-0.5)).total_seconds() / 3600)


def test_patient_header_has_the_latest_score_and_trend(home, engine):
    header = views.patient_header(engine, "E1", model_version=home.version)
    assert header is not None and header.ward == WARD_A and header.admitted
    assert header.risk == pytest.approx(0.45) and header.trend == "rising"
    assert views.patient_header(engine, "E5", model_version=home.version).admitted is False
    assert views.patient_header(engine, "nobody", model_version=home.version) is None


def test_driver_comparison_says_what_changed_since_24_hours_ago(home, engine):
    comparison = views.driver_comparison(engine, "E1", model_version=home.version, hours=24)
    assert comparison.then_at == _hours(-24) and comparison.risk_then == pytest.approx(0.05)
    changes = dict(comparison.changes.select("variable", "change").iter_rows())
    assert changes == {"resp_rate": "new", "heart_rate": "stronger", "creatinine": "gone"}


def test_alert_markers_sit_at_the_risk_of_the_hour_before_them(home, engine):
    markers = views.alert_markers(engine, "E1", model_version=home.version)
    raised = markers.filter(pl.col("action") == "raised").row(0, named=True)
    assert raised["actor"] == "riskcast" and raised["risk_at"] == pytest.approx(0.25)


def test_encounter_observations_keep_the_window_and_labels(home):
    frame = views.encounter_observations(Lake(home.settings.lake_dir), "E1", until=NOW, hours=24)
    assert frame.filter(pl.col("variable") == "resp_rate")["value"].to_list() == [24.0, 28.0]
    labs = views.latest_values(frame.filter(pl.col("kind") == "lab")).row(0, named=True)
    shown = (labs["label"], labs["last_value"], labs["previous_value"], labs["unit_display"])
    assert shown == ("Creatinine", 140.0, 90.0, "µmol/L")


def test_feed_freshness_flags_a_ward_feed_older_than_its_stale_interval(home):
    frame = views.feed_freshness(Lake(home.settings.lake_dir), now=NOW)
    by_key = {(r["ward"], r["variable"]): r for r in frame.iter_rows(named=True)}
    assert by_key[(WARD_A, "heart_rate")]["stale"] is False
    assert by_key[(WARD_A, "resp_rate")]["hours_since"] == pytest.approx(40 / 60)
    stale_limit = by_key[(WARD_B, "heart_rate")]["stale_after_hours"]
    late = views.feed_freshness(Lake(home.settings.lake_dir), now=_hours(stale_limit + 1))
    assert late.filter(pl.col("ward") == WARD_B, pl.col("variable") == "heart_rate")["stale"].to_list() == [True]


def test_quarantine_summary_counts_rows_per_table_and_rule(engine):
    summary = views.quarantine_summary(engine)
    assert summary.select("table_name", "rule", "rows").rows() == [
        ("observations", "out_of_range", 2),
        ("patients", "unparseable_value", 1),
    ]


def test_recent_runs_list_pipeline_runs_and_job_firings_newest_first(engine):
    runs = views.recent_runs(engine)
    assert runs.row(0, named=True)["source"] == "job"
    assert runs.row(0, named=True)["error"] == "IngestError: feed.csv"
    assert runs.filter(pl.col("source") == "run").height == 3


def test_scoring_freshness_is_stale_when_the_latest_hour_is_old(home, engine):
    assert views.scoring_freshness(engine, model_version=home.version, now=NOW).stale is False
    assert views.scoring_freshness(engine, model_version=home.version, now=_hours(5)).stale is True


# ------------------------------------------------------------------------ users and roles


def test_passwords_are_stored_only_as_argon2_hashes(writable):
    engine = open_store(writable.settings.database_url)
    auth.add_user(engine, "Nina", role="nurse", wards=[WARD_A], password=PASSWORD, now=NOW)
    with engine.connect() as connection:
        stored = connection.execute(select(users.c.password_hash).where(users.c.username == "nina")).scalar_one()
    engine.dispose()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_only_the_right_password_of_an_active_user_signs_in(writable):
    engine = open_store(writable.settings.database_url)
    auth.add_user(engine, "nina", role="nurse", wards=[WARD_A], password=PASSWORD, now=NOW)
    assert auth.authenticate(engine, "nina", PASSWORD) == auth.DashboardUser("nina", "nurse", (WARD_A,))
    assert auth.authenticate(engine, "nina", PASSWORD + "!") is None
    assert auth.authenticate(engine, "nobody", PASSWORD) is None
    auth.set_active(engine, "nina", active=False)
    assert auth.authenticate(engine, "nina", PASSWORD) is None
    engine.dispose()


def test_a_nurse_needs_a_ward_and_sees_only_her_wards(writable):
    engine = open_store(writable.settings.database_url)
    with pytest.raises(ConfigError, match="at least one --ward"):
        auth.add_user(engine, "nina", role="nurse", password=PASSWORD, now=NOW)
    engine.dispose()
    nurse = auth.DashboardUser("nina", "nurse", (WARD_A,))
    physician = auth.DashboardUser("phil", "physician", ())
    assert nurse.may_see_ward(WARD_A) and not nurse.may_see_ward(WARD_B) and not nurse.may_see_ward(None)
    assert physician.visible_wards is None and physician.may_see_ward(WARD_B)
    assert not auth.DashboardUser("dana", "data_scientist", ()).may_open("patient")


def test_the_session_key_is_made_once_readable_by_its_owner_only(tmp_path):
    first = auth.secret_key(tmp_path)
    path = tmp_path / auth.SECRET_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.secret_key(tmp_path) == first and len(first) == 64
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        auth.secret_key(tmp_path)


# --------------------------------------------------------------------------- the web app


@pytest.fixture(scope="module")
def app(home: Home) -> Any:
    application = create_app(home.settings, clock=lambda: NOW, policy_set=POLICY)
    engine = application.server.extensions["riskcast"].engine
    for name, role, wards in [("nina", "nurse", [WARD_A]), ("adam", "admin", []), ("dana", "data_scientist", [])]:
        auth.add_user(engine, name, role=role, wards=wards, password=PASSWORD, now=NOW, replace=True)
    return application


def sign_in(client: Any, username: str, password: str = PASSWORD) -> Any:
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


def test_a_signed_out_page_request_is_sent_to_sign_in_with_no_data(app):
    response = app.server.test_client().get("/patient/E1")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert b"E1" not in response.get_data()


def test_a_signed_out_dash_request_gets_an_empty_401(app):
    client = app.server.test_client()
    for path in ("/_dash-layout", "/_dash-dependencies"):
        response = client.get(path)
        assert (response.status_code, response.get_data()) == (401, b"")
    response = client.post("/_dash-update-component", json={"output": "ward-grid.rowData", "inputs": []})
    assert (response.status_code, response.get_data()) == (401, b"")


def test_a_wrong_password_is_refused_and_the_right_one_opens_the_layout(app):
    client = app.server.test_client()
    assert sign_in(client, "nina", "wrong password!").status_code == 401
    assert client.get("/_dash-layout").status_code == 401
    response = sign_in(client, "nina")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/_dash-layout").status_code == 200


def test_the_sign_in_form_needs_its_token(app):
    client = app.server.test_client()
    assert client.post("/login", data={"username": "nina", "password": PASSWORD}).status_code == 400
    assert client.get("/_dash-layout").status_code == 401


def test_after_sign_in_a_nurse_lands_on_the_patient_she_asked_for(app):
    client = app.server.test_client()
    client.get("/patient/E1")
    assert sign_in(client, "nina").headers["Location"] == "/patient/E1"


def test_responses_forbid_caching_framing_and_referrers(app):
    client = app.server.test_client()
    sign_in(client, "nina")
    headers = client.get("/_dash-layout").headers
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"


def test_the_ward_callback_gives_a_nurse_her_ward_only(app):
    client = app.server.test_client()
    sign_in(client, "nina")
    response = dash_call(client, "ward-grid.rowData", {"ward-ward.value": "__all__", "ward-action-done.data": 0})
    rows = response.get_json()["response"]["ward-grid"]["rowData"]
    assert {r["ward"] for r in rows} == {WARD_A} and "E4" not in response.get_data(as_text=True)
    other = dash_call(client, "ward-grid.rowData", {"ward-ward.value": WARD_B, "ward-action-done.data": 0})
    assert other.status_code == 204 and b"E4" not in other.get_data()


def test_the_patient_callback_refuses_a_patient_of_another_ward(app):
    client = app.server.test_client()
    sign_in(client, "nina")
    mine = dash_call(client, "patient-header.children", {"patient-action-done.data": 0}, {"patient-encounter.data": "E1"})
    assert mine.status_code == 200 and "45%" in mine.get_data(as_text=True)
    theirs = dash_call(client, "patient-header.children", {"patient-action-done.data": 0}, {"patient-encounter.data": "E4"})
    assert theirs.status_code == 204 and b"60%" not in theirs.get_data()


def test_a_data_scientist_gets_no_ward_data(app):
    client = app.server.test_client()
    assert sign_in(client, "dana").headers["Location"] == "/data-health"
    response = dash_call(client, "ward-grid.rowData", {"ward-ward.value": "__all__", "ward-action-done.data": 0})
    assert response.status_code == 204 and b"E1" not in response.get_data()


def test_the_access_log_shows_no_encounter_ids(app, caplog):
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            token = re.search(r'name="csrf" value="([^"]+)"', opener.open(f"{base}/login").read().decode()).group(1)
            data = f"csrf={token}&username=nina&password={PASSWORD.replace(' ', '+')}".encode()
            opener.open(f"{base}/login", data=data).read()
            opener.open(f"{base}/patient/E1?from=E3").read()
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(f"{base}/_dash-update-component?id=E3", data=b"{}")
    finally:
        server.shutdown()
        thread.join()
    lines = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert any("GET /patient/…" in line for line in lines)
    assert not any("E1" in line or "E3" in line for line in lines)


def test_request_paths_keep_only_their_route(tmp_path):
    assert redact_path("/patient/E0000249?x=1") == "/patient/…?…"
    assert redact_path("/E0000249") == "/…"
    assert redact_path("/_dash-update-component") == "/_dash-update-component"


# ------------------------------------------------------------------------------ alert actions


@pytest.fixture
def acting(writable: Home) -> Iterator[tuple[Any, Home]]:
    application = create_app(writable.settings, clock=lambda: NOW, policy_set=POLICY)
    yield application, writable
    application.server.extensions["riskcast"].engine.dispose()


def _alert_of(engine: Any, encounter_id: str) -> int:
    frame = list_alerts(engine).filter(pl.col("encounter_id") == encounter_id, pl.col("kind") == "risk")
    return int(frame["alert_id"][0])


def test_a_nurse_acknowledges_an_alert_on_her_ward_in_her_name(acting):
    application, home = acting
    engine = application.server.extensions["riskcast"].engine
    alert_id = _alert_of(engine, "E1")
    with application.server.test_request_context("/"):
        outcome = act_on_alert(auth.DashboardUser("nina", "nurse", (WARD_A,)), alert_id, "acknowledge",
                               reason="seen, obs every 30 min", snooze_hours=None)  # fmt: skip
    assert outcome.ok, outcome.message
    last = alert_history(engine, alert_id=alert_id).row(-1, named=True)
    recorded = (last["actor"], last["role"], last["action"], last["reason"])
    assert recorded == ("nina", "nurse", "acknowledged", "seen, obs every 30 min")


def test_a_nurse_cannot_act_on_an_alert_of_another_ward(acting):
    application, _home = acting
    engine = application.server.extensions["riskcast"].engine
    alert_id = _alert_of(engine, "E4")
    before = alert_history(engine, alert_id=alert_id)
    with application.server.test_request_context("/"):
        outcome = act_on_alert(auth.DashboardUser("nina", "nurse", (WARD_A,)), alert_id, "resolve", reason="x", snooze_hours=None)
    assert not outcome.ok and outcome.message == "That alert is not on your wards."
    assert alert_history(engine, alert_id=alert_id).equals(before)


def test_an_admin_sees_alerts_but_cannot_act_on_them(acting):
    application, _home = acting
    engine = application.server.extensions["riskcast"].engine
    with application.server.test_request_context("/"):
        outcome = act_on_alert(auth.DashboardUser("adam", "admin", ()), _alert_of(engine, "E1"), "acknowledge",
                               reason=None, snooze_hours=None)  # fmt: skip
    assert not outcome.ok and "not act" in outcome.message


def test_a_snooze_needs_a_reason_and_ends_within_the_policy(acting):
    application, _home = acting
    engine = application.server.extensions["riskcast"].engine
    nurse = auth.DashboardUser("nina", "nurse", (WARD_A,))
    alert_id = _alert_of(engine, "E1")
    with application.server.test_request_context("/"):
        refused = act_on_alert(nurse, alert_id, "snooze", reason="  ", snooze_hours=1)
        snoozed = act_on_alert(nurse, alert_id, "snooze", reason="family visiting", snooze_hours=1)
    assert not refused.ok and "reason is required" in refused.message
    assert snoozed.ok and snoozed.message == "Snoozed until 13:10."


def test_resolving_needs_a_reason_and_closes_the_alert(acting):
    application, _home = acting
    engine = application.server.extensions["riskcast"].engine
    nurse = auth.DashboardUser("nina", "nurse", (WARD_A,))
    alert_id = _alert_of(engine, "E1")
    with application.server.test_request_context("/"):
        refused = act_on_alert(nurse, alert_id, "resolve", reason=None, snooze_hours=None)
        resolved = act_on_alert(nurse, alert_id, "resolve", reason="reviewed by outreach team", snooze_hours=None)
    assert not refused.ok and "reason is required" in refused.message
    assert resolved.ok and resolved.message == "Resolved at 12:10."
    assert list_alerts(engine).filter(pl.col("alert_id") == alert_id)["state"].to_list() == ["resolved"]


# -------------------------------------------------------------------------------- the command


def test_users_add_reads_the_password_from_stdin_and_list_never_shows_it(tmp_path):
    runner = CliRunner()
    home = str(tmp_path / "home")
    added = runner.invoke(cli, ["--home", home, "users", "add", "Nina", "--role", "nurse", "--ward", WARD_A,
                                "--password-stdin"], input=f"{PASSWORD}\n", obj={})  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["--home", home, "--json", "users", "list"], obj={})
    assert json.loads(listed.output)["users"][0] | {"created_at": None} == {
        "username": "nina", "role": "nurse", "wards": [WARD_A], "active": True, "created_at": None,
    }  # fmt: skip
    assert PASSWORD not in listed.output and "argon2" not in listed.output
    refused = runner.invoke(cli, ["--home", home, "users", "add", "ben", "--role", "nurse", "--password-stdin"],
                            input=f"{PASSWORD}\n", obj={})  # fmt: skip
    assert refused.exit_code == 1 and "at least one --ward" in refused.output
