"""The dashboard as an attacker meets it: sessions that end, sign-in throttling, password
strength, the Secure cookie, crafted callback values, unknown static paths, and the
production server `riskcast serve` runs.

The home is the small one of dashboard_home (two wards, hand-written scores and the
alerts the real state machine raised from them). Each test that signs in builds its own app
over a copy of that home, with a session clock the test moves by hand: no test sleeps.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from dashboard_home import NOW, PASSWORD, POLICY, WARD_A, WARD_B, home, risk_alert_of, writable  # noqa: F401
from riskcast.cli import cli
from riskcast.config import Settings
from riskcast.dashboards import auth
from riskcast.dashboards.app import create_app
from riskcast.dashboards.context import SecurityOptions
from riskcast.dashboards.throttle import SignInThrottle
from riskcast.errors import ConfigError
from riskcast.store import open_store
from riskcast.store.tables import auth_events

ADDRESS = "127.0.0.1"
"""The address Flask's test client sends from."""


class HandClock:
    """A session clock the test moves: `clock.advance(minutes=31)`."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock() -> HandClock:
    return HandClock(datetime(2026, 3, 2, 8, 0, tzinfo=NOW.tzinfo))


@pytest.fixture
def make_app(writable, clock) -> Iterator[Any]:  # noqa: F811 - the fixture imported above
    """Build an app over a copy of the home with nina, a nurse of ward A (each password hash
    and check costs one Argon2 run, a few tenths of a second: tests keep them few)."""
    built: list[Any] = []

    def make(**security: Any) -> Any:
        application = create_app(writable.settings, clock=lambda: NOW, policy_set=POLICY, session_clock=clock,
                                 security=SecurityOptions(**security))  # fmt: skip
        auth.add_user(engine_of(application), "nina", role="nurse", wards=[WARD_A], password=PASSWORD, now=NOW, replace=True)
        built.append(application)
        return application

    yield make
    for application in built:
        application.server.extensions["riskcast"].engine.dispose()


@pytest.fixture
def app(make_app) -> Any:
    return make_app()


QUICK_THROTTLE = SignInThrottle(user_free_failures=2, address_free_failures=10)
"""Two free failures, to keep the number of Argon2 checks small."""


@pytest.fixture(scope="module")
def shared_app(home, tmp_path_factory) -> Iterator[Any]:  # noqa: F811
    """One app for the tests that only send what must be refused (nothing they do changes it)."""
    copy = tmp_path_factory.mktemp("security-home") / "home"
    shutil.copytree(home.settings.home, copy, ignore=shutil.ignore_patterns(auth.SECRET_KEY_FILE))
    application = create_app(Settings(home=copy), clock=lambda: NOW, policy_set=POLICY)
    for name, role, wards in [("nina", "nurse", [WARD_A]), ("adam", "admin", [])]:
        auth.add_user(engine_of(application), name, role=role, wards=wards, password=PASSWORD, now=NOW, replace=True)
    yield application
    engine_of(application).dispose()


def engine_of(application: Any) -> Any:
    return application.server.extensions["riskcast"].engine


def sign_in(client: Any, username: str, password: str = PASSWORD) -> Any:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"csrf": token, "username": username, "password": password})


def session_cookie(client: Any) -> str:
    return client.get_cookie("riskcast_session").value


def with_cookie(application: Any, value: str) -> Any:
    """A new browser holding a copy of another's session cookie."""
    thief = application.server.test_client()
    thief.set_cookie("riskcast_session", value)
    return thief


_DEPENDENCIES: list[dict[str, Any]] = []


def callback(client: Any, output_contains: str, inputs: dict[str, Any], state: dict[str, Any] | None = None,
             *, changed: str | None = None) -> Any:  # fmt: skip
    """Call the callback whose output names `output_contains` as the Dash renderer would, with
    `changed` (default: its first input) as the property that fired it."""
    if not _DEPENDENCIES:  # every app has the same callbacks; fetching them counts as a click
        _DEPENDENCIES.extend(json.loads(client.get("/_dash-dependencies").get_data()))
    spec = next(d for d in _DEPENDENCIES if output_contains in d["output"])

    def values(items: list[dict[str, str]], given: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**item, "value": given.get(f"{item['id']}.{item['property']}")} for item in items]

    outputs = [dict(zip(("id", "property"), part.rsplit(".", 1), strict=True)) for part in spec["output"].strip(".").split("...")]
    first = f"{spec['inputs'][0]['id']}.{spec['inputs'][0]['property']}"
    payload = {"output": spec["output"], "outputs": outputs if len(outputs) > 1 else outputs[0],
               "inputs": values(spec["inputs"], inputs), "state": values(spec["state"], state or {}),
               "changedPropIds": [changed or first]}  # fmt: skip
    return client.post("/_dash-update-component", json=payload)


def layout_status(client: Any) -> int:
    return client.get("/_dash-layout").status_code


def events(application: Any) -> list[tuple[str, str | None, str | None]]:
    with engine_of(application).connect() as connection:
        rows = connection.execute(select(auth_events.c.event, auth_events.c.username, auth_events.c.address)
                                  .order_by(auth_events.c.id)).all()  # fmt: skip
    return [tuple(row) for row in rows]


# ------------------------------------------------------------------------ 10: sessions


def test_a_cookie_copied_before_sign_out_reads_nothing_after_it(app):
    client = app.server.test_client()
    assert sign_in(client, "nina").status_code == 302
    copied = session_cookie(client)
    assert layout_status(with_cookie(app, copied)) == 200
    client.get("/logout")
    assert layout_status(with_cookie(app, copied)) == 401
    assert layout_status(client) == 401


def test_changing_a_password_or_disabling_the_user_ends_their_sessions(app):
    engine = engine_of(app)
    client = app.server.test_client()
    sign_in(client, "nina")
    auth.add_user(engine, "nina", role="nurse", wards=[WARD_A], password=PASSWORD + " again", now=NOW, replace=True)
    assert layout_status(client) == 401
    sign_in(client, "nina", PASSWORD + " again")
    assert layout_status(client) == 200
    auth.set_active(engine, "nina", active=False, now=NOW)
    auth.set_active(engine, "nina", active=True)
    assert layout_status(client) == 401
    assert [e for e, _user, _address in events(app)].count("sessions_revoked") == 2


def test_a_session_ends_after_the_idle_time_without_a_click_even_while_the_board_refreshes(app, clock):
    client = app.server.test_client()
    sign_in(client, "nina")
    ward_inputs = {"ward-ward.value": WARD_A, "ward-action-done.data": 0, "ward-interval.n_intervals": 1}
    clock.advance(minutes=20)
    assert callback(client, "ward-grid.rowData", ward_inputs, changed="ward-ward.value").status_code == 200
    clock.advance(minutes=20)  # 40 min after signing in, 20 after the last click: still signed in
    assert callback(client, "ward-grid.rowData", ward_inputs, changed="ward-interval.n_intervals").status_code == 200
    clock.advance(minutes=11)  # 31 min after the last click; the automatic refresh did not count
    assert callback(client, "ward-grid.rowData", ward_inputs, changed="ward-interval.n_intervals").status_code == 401
    assert layout_status(client) == 401


def test_a_session_ends_after_its_lifetime_however_busy(make_app, clock):
    application = make_app(session_hours=1, idle_minutes=30)
    client = application.server.test_client()
    sign_in(client, "nina")
    for _ in range(3):
        clock.advance(minutes=25)
        status = layout_status(client)
    assert status == 401  # 75 min after signing in, 25 after the last request


def test_the_store_keeps_only_a_digest_of_the_session_token(app):
    client = app.server.test_client()
    sign_in(client, "nina")
    cookie = session_cookie(client)
    with engine_of(app).connect() as connection:
        stored = [str(value) for row in connection.exec_driver_sql("SELECT * FROM dashboard_sessions").all() for value in row]
    token = app.server.session_interface.get_signing_serializer(app.server).loads(cookie)["sid"]
    assert len(token) >= 32 and not any(token in value for value in stored)


# ---------------------------------------------------------------------- 11: throttling


def test_repeated_wrong_passwords_are_answered_429_with_retry_after_and_recorded(make_app, clock):
    application = make_app(throttle=QUICK_THROTTLE)
    client = application.server.test_client()
    for _ in range(QUICK_THROTTLE.user_free_failures):
        assert sign_in(client, "nina", "not her password").status_code == 401
    refused = sign_in(client, "nina")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == 30
    assert "Too many failed sign-ins for this account. Try again in 30 seconds." in refused.get_data(as_text=True)
    assert layout_status(client) == 401  # the right password did not sign her in
    assert sign_in(client, "nina").status_code == 429  # nor does trying again during the wait
    assert [e for e in events(application) if e[0] == "sign_in_throttled"] == [("sign_in_throttled", "nina", ADDRESS)]
    clock.advance(seconds=31)
    assert sign_in(client, "nina", "still not it").status_code == 401
    again = sign_in(client, "nina")
    assert again.status_code == 429 and int(again.headers["Retry-After"]) == 60  # the wait doubles
    clock.advance(seconds=61)
    assert sign_in(client, "nina").status_code == 302 and layout_status(client) == 200


def test_the_default_throttle_waits_after_five_failures_doubling_up_to_fifteen_minutes():
    throttle = SignInThrottle()
    waits = [throttle.wait_seconds(n, free=throttle.user_free_failures) for n in (4, 5, 6, 7, 10, 100)]
    assert waits == [0, 30, 60, 120, 900, 900]


def test_many_failures_from_one_address_throttle_every_name_from_it(make_app):
    application = make_app(throttle=SignInThrottle(user_free_failures=5, address_free_failures=2))
    client = application.server.test_client()
    for name in ("ann", "bob"):
        assert sign_in(client, name, "guessing").status_code == 401
    refused = sign_in(client, "nina")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == 30
    assert "from this computer" in refused.get_data(as_text=True)
    recorded = events(application)
    assert recorded[-3:] == [("sign_in_failed", "ann", ADDRESS), ("sign_in_failed", "bob", ADDRESS),
                             ("sign_in_throttled", "nina", ADDRESS)]  # fmt: skip


def test_a_success_clears_the_users_count_of_failures(make_app):
    application = make_app(throttle=QUICK_THROTTLE)
    client = application.server.test_client()
    assert sign_in(client, "nina", "typo in it").status_code == 401
    assert sign_in(client, "nina").status_code == 302
    client.get("/logout")
    assert sign_in(client, "nina", "typo in it").status_code == 401
    assert sign_in(client, "nina").status_code == 302


def test_a_password_typed_as_the_user_name_is_not_recorded(app):
    sign_in(app.server.test_client(), "night shift 0300", "x")
    assert events(app)[-1] == ("sign_in_failed", None, ADDRESS)


# ------------------------------------------------------------------ 12: password strength


@pytest.mark.parametrize("weak", ["aaaaaaaaaa", " " * 10, "Password123!", "riskcast2026", "nina-north-medical-1"])
def test_easily_guessed_passwords_are_refused_with_the_estimators_advice(writable, weak):  # noqa: F811
    engine = open_store(writable.settings.database_url)
    try:
        with pytest.raises(ConfigError, match=r"too easy to guess \(strength [0-2] of 4; at least 3 needed\)"):
            auth.add_user(engine, "nina", role="nurse", wards=[WARD_A], password=weak, now=NOW)
    finally:
        engine.dispose()


def test_users_add_says_why_a_password_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "users", "add", "nina", "--role", "nurse",
                                      "--ward", WARD_A, "--password-stdin"], input="Password123!\n", obj={})  # fmt: skip
    assert result.exit_code == 1 and "too easy to guess" in result.output and "commonly used password" in result.output


# -------------------------------------------------------------------- 13: Secure cookie


def cookie_header(response: Any) -> str:
    return next(v for v in response.headers.getlist("Set-Cookie") if v.startswith("riskcast_session="))


def test_the_session_cookie_is_secure_when_served_over_https(make_app):
    application = make_app()
    over_https = application.server.test_client().get("/login", base_url="https://ward.example")
    over_http = application.server.test_client().get("/login")
    assert "Secure" in cookie_header(over_https) and "HttpOnly" in cookie_header(over_https)
    assert "Secure" not in cookie_header(over_http)
    assert over_https.headers["Strict-Transport-Security"].startswith("max-age=")
    always = make_app(cookie_secure="always").server.test_client().get("/login")
    assert "Secure" in cookie_header(always)


def test_an_unknown_cookie_setting_is_refused():
    with pytest.raises(ConfigError, match="cookie_secure"):
        SecurityOptions(cookie_secure="sometimes")


# --------------------------------------------------------------- 14: crafted callbacks

CRAFTED_SNOOZE_HOURS = [1e9, "abc", [1], float("inf"), -1, True, {"h": 1}]
CRAFTED_ALERT_IDS = [10**30, -(10**30), "abc", [1], 1.5, True, {"id": 1}]


@pytest.fixture(scope="module")
def nurse(shared_app) -> Any:
    client = shared_app.server.test_client()
    sign_in(client, "nina")
    return client


@pytest.fixture(scope="module")
def admin(shared_app) -> Any:
    client = shared_app.server.test_client()
    sign_in(client, "adam")
    return client


def assert_no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("hours", CRAFTED_SNOOZE_HOURS, ids=repr)
def test_crafted_snooze_hours_are_refused_with_a_message(shared_app, nurse, caplog, hours):
    caplog.set_level(logging.INFO)
    alert_id = risk_alert_of(engine_of(shared_app), "E1")
    response = callback(nurse, "patient-action-message", {"patient-snooze.n_clicks": 1},
                        {"patient-alert.value": alert_id, "patient-reason.value": "family visiting",
                         "patient-snooze-hours.value": hours}, changed="patient-snooze.n_clicks")  # fmt: skip
    assert response.status_code == 200
    message = response.get_json()["response"]["patient-action-message"]["children"]["props"]["children"]
    assert message.startswith("Choose how long to snooze for")
    assert_no_error_logged(caplog)


@pytest.mark.parametrize("alert_id", CRAFTED_ALERT_IDS, ids=repr)
def test_crafted_alert_ids_are_refused_with_a_message(nurse, caplog, alert_id):
    caplog.set_level(logging.INFO)
    patient = callback(nurse, "patient-action-message", {"patient-ack.n_clicks": 1}, {"patient-alert.value": alert_id},
                       changed="patient-ack.n_clicks")  # fmt: skip
    ward = callback(nurse, "ward-action-message", {"ward-ack.n_clicks": 1},
                    {"ward-grid.selectedRows": [{"alert_id": alert_id, "encounter_id": "E1"}]},
                    changed="ward-ack.n_clicks")  # fmt: skip
    for response, output in ((patient, "patient-action-message"), (ward, "ward-action-message")):
        assert response.status_code == 200
        assert "That alert is not on your wards." in json.dumps(response.get_json()["response"][output])
    assert_no_error_logged(caplog)


@pytest.mark.parametrize("selected", [[1], ["E1"], "E1", {"alert_id": 1}, [[{"alert_id": 1}]]], ids=repr)
def test_crafted_ward_rows_are_refused_with_a_message(nurse, caplog, selected):
    caplog.set_level(logging.INFO)
    response = callback(nurse, "ward-action-message", {"ward-ack.n_clicks": 1}, {"ward-grid.selectedRows": selected},
                        changed="ward-ack.n_clicks")  # fmt: skip
    assert response.status_code == 200 and "Select a patient with an alert first." in response.get_data(as_text=True)
    chosen = callback(nurse, "ward-action-target", {"ward-grid.selectedRows": selected})
    assert chosen.status_code == 200 and "Select a patient with an alert." in chosen.get_data(as_text=True)
    assert_no_error_logged(caplog)


@pytest.mark.parametrize("value", [[WARD_A], {"w": 1}, 10**30, "x" * 10_000], ids=lambda v: repr(v)[:20])
def test_crafted_ward_choices_and_report_ids_draw_nothing_and_log_no_error(admin, caplog, value):
    caplog.set_level(logging.INFO)
    ward = callback(admin, "ward-grid.rowData", {"ward-ward.value": value, "ward-action-done.data": 0})
    fairness = callback(admin, "fairness-verdict.children", {"fairness-audit.value": value})
    groups = callback(admin, "fairness-groups.rowData", {"fairness-audit.value": value, "fairness-feature.value": value,
                                                         "fairness-metric.value": value})  # fmt: skip
    model = callback(admin, "model-card.children", {"model-version.value": value})
    assert [r.status_code for r in (ward, fairness, groups, model)] == [204, 204, 204, 204]
    assert_no_error_logged(caplog)


def test_an_unexpected_error_is_logged_without_its_message_or_traceback(app, caplog):
    """A safety net for bugs: the log names the exception and where it was raised, never its
    message (a database error quotes the values it was given)."""

    @app.server.route("/boom")
    def boom() -> str:
        raise ValueError("E1 is on ward north-medical-1")

    client = app.server.test_client()
    sign_in(client, "nina")
    caplog.set_level(logging.INFO)
    response = client.get("/boom")
    assert response.status_code == 500 and b"E1" not in response.get_data()
    assert "ValueError" in caplog.text and "test_dashboard_security.py" in caplog.text
    assert "E1" not in caplog.text and "Traceback" not in caplog.text


# -------------------------------------------------------------- 15: unknown static paths


@pytest.mark.parametrize("path", [
    "/_dash-component-suites/dash/E0001.js",
    "/_dash-component-suites/nosuch/E0001.js",
    "/_dash-component-suites/",
    "/_dash-component-suites/dash/",
    "/assets/",
    "/assets/E0001/",
    "/assets/E0001.css",
    "/assets/../auth.py",
])  # fmt: skip
def test_unknown_static_paths_answer_404_with_no_traceback_and_no_path_in_the_log(shared_app, caplog, path):
    caplog.set_level(logging.DEBUG)
    response = shared_app.server.test_client().get(path)
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "dash_renderer" not in body and "<script" not in body and "E0001" not in body
    assert_no_error_logged(caplog)
    assert "E0001" not in caplog.text


def test_real_static_files_are_still_served_to_a_signed_out_browser(shared_app, nurse):
    index = nurse.get("/").get_data(as_text=True)
    script = re.search(r'src="(/_dash-component-suites/dash/[^"]+)"', index).group(1)
    signed_out = shared_app.server.test_client()
    assert signed_out.get(script).status_code == 200
    assert signed_out.get("/assets/riskcast.css").status_code == 200
    assert signed_out.get("/assets/session.js").status_code == 200


# ---------------------------------------------------------- 17: the production server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen, list[str]]]:
    """`riskcast serve` in its own process, behind a (pretend) proxy on 127.0.0.1."""
    port = free_port()
    command = [sys.executable, "-m", "riskcast", "--home", str(tmp_path / "home"), "serve", "--port", str(port),
               "--no-demo-users", "--trusted-proxy", "127.0.0.1", "--threads", "4"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "press Ctrl+C" in line or process.poll() is not None:
            break
    try:
        yield f"http://127.0.0.1:{port}", process, lines
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_riskcast_serve_runs_a_production_server_with_secure_cookies_behind_tls(served):
    base, process, lines = served
    plain = urllib.request.urlopen(f"{base}/login", timeout=10)
    assert plain.status == 200 and plain.headers.get("Server") == "riskcast"
    assert "Secure" not in plain.headers["Set-Cookie"]
    behind_tls = urllib.request.urlopen(urllib.request.Request(f"{base}/login", headers={"X-Forwarded-Proto": "https"}),
                                        timeout=10)  # fmt: skip
    assert "Secure" in behind_tls.headers["Set-Cookie"]
    connection = http.client.HTTPConnection(urlsplit(base).hostname, urlsplit(base).port, timeout=10)
    connection.putrequest("POST", "/login")
    connection.putheader("Content-Length", str(2 * 1024 * 1024))  # announced, never sent
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    process.send_signal(signal.SIGINT)
    output = "".join(lines) + process.communicate(timeout=20)[0]
    assert "waitress" in output and "4 threads" in output
    assert "development server" not in output.lower() and "Traceback" not in output


# ------------------------------------------------------------------ the store's migration


def test_the_sessions_migration_goes_down_to_0002_and_up_again(db_url):
    from alembic import command
    from sqlalchemy import inspect

    from riskcast.store import alembic_config, current_revision, head_revision

    engine = open_store(db_url)
    try:
        assert {"dashboard_sessions", "auth_events"} <= set(inspect(engine).get_table_names())
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0002")
        assert current_revision(engine) == "0002"
        assert not {"dashboard_sessions", "auth_events"} & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    again = open_store(db_url)
    assert current_revision(again) == head_revision() and "auth_events" in inspect(again).get_table_names()
    again.dispose()
