"""What a page draws instead of data: not signed in, not for this role, not found."""

from __future__ import annotations

from dash import dcc, html


def notice(text: str, *, link: tuple[str, str] | None = None) -> html.Div:
    """A quiet centred message, with an optional (label, href) link."""
    children: list = [html.P(text)]
    if link is not None:
        children.append(dcc.Link(link[0], href=link[1]))
    return html.Div(children, className="rc-card rc-notice", role="status")


def not_allowed() -> html.Div:
    """For a signed-out browser or a role that may not open the page: no data at all."""
    return notice("This page is not available to your account.", link=("Go to the start page", "/"))


def patient_not_found() -> html.Div:
    """The same words whether the encounter does not exist or is on another ward."""
    return notice("No patient with that id on your wards.", link=("Back to the ward", "/"))
