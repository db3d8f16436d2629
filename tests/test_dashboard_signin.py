"""riskcast.dashboards.signin: the sign-in form and the gate in front of the dashboard, over the
small dashboard home's app (dashboard_home): signed-out requests get nothing, the form needs
its token, and every response forbids caching, framing and referrers."""

from __future__ import annotations

from dashboard_home import PASSWORD, app, home, sign_in  # noqa: F401 - fixtures


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
