"""riskcast.dashboards.pages.ward: the ward board's callback answers a user with the wards they
may see and nothing else (the small dashboard home's app, driven as the Dash renderer would)."""

from __future__ import annotations

from dashboard_home import WARD_A, WARD_B, app, dash_call, home, sign_in  # noqa: F401 - fixtures


def test_the_ward_callback_gives_a_nurse_her_ward_only(app):
    client = app.server.test_client()
    sign_in(client, "nina")
    response = dash_call(client, "ward-grid.rowData", {"ward-ward.value": "__all__", "ward-action-done.data": 0})
    rows = response.get_json()["response"]["ward-grid"]["rowData"]
    assert {r["ward"] for r in rows} == {WARD_A} and "E4" not in response.get_data(as_text=True)
    other = dash_call(client, "ward-grid.rowData", {"ward-ward.value": WARD_B, "ward-action-done.data": 0})
    assert other.status_code == 204 and b"E4" not in other.get_data()


def test_a_data_scientist_gets_no_ward_data(app):
    client = app.server.test_client()
    assert sign_in(client, "dana").headers["Location"] == "/data-health"
    response = dash_call(client, "ward-grid.rowData", {"ward-ward.value": "__all__", "ward-action-done.data": 0})
    assert response.status_code == 204 and b"E1" not in response.get_data()
