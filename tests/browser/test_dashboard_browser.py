"""The dashboard in a real headless Chromium, over data made by the real flow.

One small home per module: a synthetic cohort of 300 encounters is ingested, a model is
trained with fast settings (10 bootstrap rounds, a generous alert budget so that a few
alerts are raised) and the admitted patients are scored 24 h before the cohort's present
and hourly over its last three hours, which raises alerts through the real alert policy.
The app runs in a thread on a free port with a clock starting 10 minutes after that present.

Set RISKCAST_SCREENSHOTS=docs/screenshots to keep the ward and patient screenshots.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from werkzeug.serving import make_server

from riskcast import read_models
from riskcast.alerts.state import alert_history, list_alerts
from riskcast.clock import shifted_clock
from riskcast.config import Settings
from riskcast.dashboards import auth
from riskcast.dashboards.app import create_app
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline.ingest import ingest_paths
from riskcast.pipeline.scoring import score_admitted
from riskcast.pipeline.training import train_and_register
from riskcast.store import finish_run, open_store, start_run, write_scores
from riskcast.synth import DEFAULT_NOW, generate_cohort, write_cohort

from .pages import PASSWORD, css, save_screenshot, submit_sign_in, text_of, wait_for

pytestmark = pytest.mark.browser

SCORED_HOURS_BEFORE_NOW = (24, 3, 2, 1, 0)


@dataclass(frozen=True)
class Served:
    """The running app and the facts the tests check against."""

    base: str
    settings: Settings
    engine: Any
    nurse_ward: str
    alert_encounter: str
    other_encounter: str
    physician_alert_encounter: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _build_home(home: Path) -> Settings:
    settings = Settings(home=home)
    write_cohort(generate_cohort(300, seed=5), home / "cohort")
    lake = Lake(settings.lake_dir)
    registry = ModelRegistry(settings.models_dir)
    engine = open_store(settings.database_url)
    try:
        ingest_paths([home / "cohort"], lake=lake, now=DEFAULT_NOW, database=engine)
        train_and_register(lake, registry, now=DEFAULT_NOW, n_boot=10, alerts_per_100_patient_days=40.0, seed=5,
                           database=engine)  # fmt: skip
        for hours in SCORED_HOURS_BEFORE_NOW:
            at = DEFAULT_NOW - timedelta(hours=hours)
            score_admitted(lake, registry, engine, at=at, now=at + timedelta(minutes=5))
    finally:
        engine.dispose()
    return settings


@pytest.fixture(scope="module")
def served(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = _build_home(tmp_path_factory.mktemp("browser-home"))
    app = create_app(settings, clock=shifted_clock(DEFAULT_NOW + timedelta(minutes=10)))
    engine = app.server.extensions["riskcast"].engine
    waiting = list_alerts(engine, states=["new", "escalated"]).filter(pl.col("kind") == "risk")
    if waiting.height < 2:
        pytest.fail(f"the fixture raised {waiting.height} risk alert(s) needing action; the tests need 2 on different wards")
    nurse_ward = str(waiting["ward"].mode().sort()[0])
    alert_encounter = str(waiting.filter(pl.col("ward") == nurse_ward)["encounter_id"][0])
    elsewhere = waiting.filter(pl.col("ward") != nurse_ward)
    board = read_models.ward_board(engine, model_version=ModelRegistry(settings.models_dir).champion(), now=DEFAULT_NOW)
    other = board.filter(pl.col("ward") != nurse_ward)["encounter_id"][0]
    auth.add_user(engine, "nina", role="nurse", wards=[nurse_ward], password=PASSWORD, now=DEFAULT_NOW)
    auth.add_user(engine, "phil", role="physician", password=PASSWORD, now=DEFAULT_NOW)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(
            base=f"http://127.0.0.1:{server.server_port}",
            settings=settings,
            engine=engine,
            nurse_ward=nurse_ward,
            alert_encounter=alert_encounter,
            other_encounter=str(other),
            physician_alert_encounter=str(elsewhere["encounter_id"][0]),
        )
    finally:
        server.shutdown()
        thread.join()
        engine.dispose()


# ---------------------------------------------------------------------------------- helpers








def sign_in(driver: Any, served: Served, username: str) -> None:
    """A fresh browser session signed in as `username`, on their start page with its grid drawn."""
    submit_sign_in(driver, served.base, username)
    wait_for(driver, lambda d: css(d, "#ward-grid .ag-row"), "the ward grid's rows")


def grid_ids(driver: Any, grid: str) -> list[str]:
    return [row.get_attribute("row-id") for row in css(driver, f"#{grid} .ag-center-cols-container .ag-row")]




# ------------------------------------------------------------------------------------ tests


def test_ward_and_patient_views_render_for_the_screenshots(browser, served, tmp_path):
    """First, while the nurse's alert still waits for someone: the views as they meet her."""
    sign_in(browser, served, "nina")
    wait_for(browser, lambda d: "Scores for" in text_of(d, "#ward-freshness"), "the freshness line")
    ward = save_screenshot(browser, "ward.png", tmp_path)
    browser.get(f"{served.base}/patient/{served.alert_encounter}")
    wait_for(browser, lambda d: css(d, "#patient-history .ag-row"), "the patient's alert history")
    wait_for(browser, lambda d: css(d, "#patient-vitals .main-svg"), "the vitals chart")
    patient = save_screenshot(browser, "patient.png", tmp_path)
    for path in (ward, patient):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_a_nurse_signs_in_and_sees_her_ward_most_urgent_first(browser, served):
    sign_in(browser, served, "nina")
    expected = read_models.ward_board(
        served.engine, model_version=ModelRegistry(served.settings.models_dir).champion(), now=DEFAULT_NOW,
        wards=[served.nurse_ward],
    )["encounter_id"].to_list()  # fmt: skip
    wait_for(browser, lambda d: grid_ids(d, "ward-grid") == expected, f"the ward's {len(expected)} patients in order")
    first = css(browser, f'#ward-grid .ag-center-cols-container .ag-row[row-id="{expected[0]}"]')[0]
    assert "rc-row-action" in first.get_attribute("class")
    assert served.nurse_ward in text_of(browser, "#shell-user")


def test_a_nurse_sees_no_patient_of_another_ward_in_the_list_or_by_url(browser, served):
    sign_in(browser, served, "nina")
    assert served.other_encounter not in browser.page_source
    browser.get(f"{served.base}/patient/{served.other_encounter}")
    wait_for(browser, lambda d: "No patient with that id on your wards." in d.page_source, "the not-found notice")
    assert not css(browser, "#patient-header") and not css(browser, "#patient-risk")


def test_a_nurse_opens_a_patient_and_acknowledges_the_alert_with_a_reason(browser, served):
    sign_in(browser, served, "nina")
    css(browser, f'#ward-grid .ag-row[row-id="{served.alert_encounter}"] a')[0].click()
    wait_for(browser, lambda d: d.current_url.endswith(f"/patient/{served.alert_encounter}"), "the patient page")
    wait_for(browser, lambda d: css(d, "#patient-ack") and css(d, "#patient-ack")[0].is_enabled(), "the Acknowledge button")
    assert "Risk alert" in text_of(browser, "#patient-action-target")
    css(browser, "#patient-reason")[0].send_keys("Reviewed at bedside, obs every 30 min")
    css(browser, "#patient-ack")[0].click()
    wait_for(browser, lambda d: "Acknowledged at" in text_of(d, "#patient-action-message"), "the confirmation")
    wait_for(browser, lambda d: "Reviewed at bedside" in text_of(d, "#patient-history"), "the history row")
    assert "nina (Nurse)" in text_of(browser, "#patient-history")
    alerts = list_alerts(served.engine).filter(pl.col("encounter_id") == served.alert_encounter, pl.col("kind") == "risk")
    alert_id = int(alerts["alert_id"][0])
    last = alert_history(served.engine, alert_id=alert_id).row(-1, named=True)
    assert (last["actor"], last["role"], last["action"], last["reason"]) == (
        "nina", "nurse", "acknowledged", "Reviewed at bedside, obs every 30 min"
    )  # fmt: skip


def test_a_physician_snoozes_an_alert_from_the_ward_view(browser, served):
    sign_in(browser, served, "phil")
    encounter = served.physician_alert_encounter
    wait_for(browser, lambda d: css(d, f'#ward-grid .ag-row[row-id="{encounter}"]'), "the alert's row")
    css(browser, f'#ward-grid .ag-center-cols-container .ag-row[row-id="{encounter}"] [col-id="risk_label"]')[0].click()
    wait_for(browser, lambda d: encounter in text_of(d, "#ward-action-target"), "the chosen alert")
    css(browser, "#ward-reason")[0].send_keys("Consultant review booked")
    wait_for(browser, lambda d: css(d, "#ward-snooze")[0].is_enabled(), "the Snooze button")
    css(browser, "#ward-snooze")[0].click()
    wait_for(browser, lambda d: "Snoozed until" in text_of(d, "#ward-action-message"), "the confirmation")
    state = list_alerts(served.engine).filter(pl.col("encounter_id") == encounter, pl.col("kind") == "risk")["state"][0]
    assert state == "snoozed"


def test_signed_out_requests_for_a_page_or_a_callback_get_nothing(served):
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as page:
        opener.open(f"{served.base}/patient/{served.alert_encounter}")
    assert page.value.code == 302 and page.value.headers["Location"] == "/login"
    assert served.alert_encounter.encode() not in page.value.read()
    payload = b'{"output":"ward-grid.rowData","outputs":{"id":"ward-grid","property":"rowData"},"inputs":[],"changedPropIds":[]}'
    request = urllib.request.Request(f"{served.base}/_dash-update-component", data=payload,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as callback:
        opener.open(request)
    assert callback.value.code == 401 and callback.value.read() == b""



def test_signing_out_in_the_browser_ends_the_session_its_cookie_held(browser, served):
    sign_in(browser, served, "nina")
    copied = browser.get_cookie("riskcast_session")["value"]
    copied_request = urllib.request.Request(f"{served.base}/_dash-layout", headers={"Cookie": f"riskcast_session={copied}"})
    assert urllib.request.urlopen(copied_request).status == 200
    css(browser, "#shell-signout")[0].click()
    wait_for(browser, lambda d: css(d, "#username"), "the sign-in form")
    with pytest.raises(urllib.error.HTTPError) as after:
        urllib.request.urlopen(copied_request)
    assert after.value.code == 401


CRAFTED_ENCOUNTER = "Y](https://evil.example/phish)"


def _score_a_crafted_encounter(served: Served) -> None:
    """A score, in the latest hour, for an encounter whose id is a Markdown link (on a ward of its own)."""
    version = ModelRegistry(served.settings.models_dir).champion()
    hour = read_models.latest_scored_hour(served.engine, model_version=version)
    utc = pl.Datetime("us", "UTC")
    frame = pl.DataFrame(
        [(CRAFTED_ENCOUNTER, "P-crafted", "zz-crafted-ward", "north", hour, 0.02, "scored", "")],
        schema={"encounter_id": pl.String, "patient_id": pl.String, "ward": pl.String, "site": pl.String,
                "scored_at": utc, "risk": pl.Float64, "status": pl.String, "missing": pl.String},
        orient="row",
    )  # fmt: skip
    no_drivers = pl.DataFrame(schema={"encounter_id": pl.String, "scored_at": utc, "rank": pl.Int64, "variable": pl.String,
                                      "feature": pl.String, "text": pl.String, "contribution": pl.Float64,
                                      "value": pl.Float64})  # fmt: skip
    run_id = start_run(served.engine, "score", now=DEFAULT_NOW, model_version=version)
    write_scores(served.engine, run_id, version, frame, no_drivers, now=DEFAULT_NOW)
    finish_run(served.engine, run_id, status="succeeded", now=DEFAULT_NOW)


def test_an_encounter_id_holding_markdown_shows_as_text_linking_to_its_own_page(browser, served):
    _score_a_crafted_encounter(served)
    sign_in(browser, served, "phil")
    cell = f'#ward-grid .ag-center-cols-container .ag-row[row-id="{CRAFTED_ENCOUNTER}"] [col-id="patient_link"]'

    def crafted_row(driver):
        # The grid draws only the rows in view, and a low risk sorts far down the board: scroll to it.
        driver.execute_script(
            "try { const api = dash_ag_grid.getApi('ward-grid'); const node = api.getRowNode(arguments[0]);"
            " if (node) { api.ensureNodeVisible(node, 'top'); } } catch (e) {}",
            CRAFTED_ENCOUNTER,
        )
        return css(driver, cell)

    wait_for(browser, crafted_row, "the crafted encounter's row")
    links = css(browser, f"{cell} a")
    assert css(browser, cell)[0].text == CRAFTED_ENCOUNTER
    assert len(links) == 1 and links[0].text == CRAFTED_ENCOUNTER
    assert links[0].get_attribute("href") == f"{served.base}/patient/{urllib.parse.quote(CRAFTED_ENCOUNTER, safe='')}"
    assert all(a.get_attribute("href").startswith(f"{served.base}/patient/") for a in css(browser, "#ward-grid a"))
    links[0].click()
    wait_for(browser, lambda d: text_of(d, "h1") == f"Patient {CRAFTED_ENCOUNTER}", "the crafted encounter's page")
