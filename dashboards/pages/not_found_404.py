"""Any address that is not a page."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from riskcast.dashboards import auth
from riskcast.dashboards.components.notices import notice

dash.register_page(__name__, path="/404", name="Not found", title="Not found · riskcast", nav=False, riskcast_page="404")


def layout(**_: Any) -> html.Div:
    """A page that says so, with a way back."""
    if auth.current_user() is None:
        return html.Div()
    return notice("There is no page at this address.", link=("Back to the start page", "/"))
