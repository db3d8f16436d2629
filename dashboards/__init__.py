"""The ward dashboard (Plotly Dash): `riskcast.dashboards.app.create_app` and `serve`.

Pages draw what riskcast.read_models reads from the store and the lake; staff actions
go through riskcast.alerts.state; sign-in and roles live in `auth`.
"""
