"""riskcast.dashboards.pages.patient: the patient page's callback shows a nurse her ward's
patients and nothing of another ward's (the small dashboard home's app)."""

from __future__ import annotations

from dashboard_home import app, dash_call, home, sign_in  # noqa: F401 - fixtures


def test_the_patient_callback_refuses_a_patient_of_another_ward(app):
    client = app.server.test_client()
    sign_in(client, "nina")
    mine = dash_call(client, "patient-header.children", {"patient-action-done.data": 0}, {"patient-encounter.data": "E1"})
    assert mine.status_code == 200 and "45%" in mine.get_data(as_text=True)
    theirs = dash_call(client, "patient-header.children", {"patient-action-done.data": 0}, {"patient-encounter.data": "E4"})
    assert theirs.status_code == 204 and b"60%" not in theirs.get_data()
