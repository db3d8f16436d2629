"""The frame around every page: brand, navigation for the user's role, who is signed in."""

from __future__ import annotations

import dash
from dash import dcc, html

from riskcast.dashboards.auth import DashboardUser, current_user

ROLE_NAMES = {"nurse": "Nurse", "physician": "Physician", "data_scientist": "Data scientist", "admin": "Admin"}


def _nav(user: DashboardUser) -> list:
    links = []
    for page in dash.page_registry.values():
        if page.get("nav") and user.may_open(page.get("riskcast_page", "")):
            links.append(dcc.Link(page["name"], href=page["relative_path"], id=f"shell-nav-{page['riskcast_page']}"))
    return links


def shell() -> html.Div:
    """The app layout (called per request): header for the signed-in user, then the page."""
    user = current_user()
    if user is None:  # the gate already refused the request; draw nothing just in case
        return html.Div(id="shell-signed-out")
    wards = ", ".join(user.visible_wards) if user.visible_wards is not None else "all wards"
    return html.Div(
        [
            html.Header(
                [
                    dcc.Link([html.Span(className="rc-brand-mark"), "riskcast"], href="/", className="rc-brand"),
                    html.Nav(_nav(user), className="rc-nav"),
                    html.Div(
                        [
                            html.Span(f"{user.username} · {ROLE_NAMES.get(user.role, user.role)} · {wards}", id="shell-user"),
                            html.A("Sign out", href="/logout", id="shell-signout"),
                        ],
                        className="rc-user",
                    ),
                ],
                className="rc-header",
            ),
            html.Main(dash.page_container, className="rc-main"),
        ]
    )
