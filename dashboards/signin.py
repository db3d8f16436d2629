"""The sign-in page, sign-out, and the gate that refuses signed-out requests.

Sign-in is a plain HTML form served by Flask (not a Dash page), so a signed-out browser
never loads the dashboard's code or layout. The gate runs before every request: only the
sign-in page, sign-out and static files (stylesheets, Dash's JavaScript bundles) are
public. Anything else from a signed-out browser gets nothing: a page request is redirected
to /login, and a Dash request (layout, dependencies, callbacks) gets an empty 401, which
the page's script (assets/session.js) turns into a visit to /login. A static path that
names no file (an unknown component suite, `/assets/` itself) is an empty 404 for
everyone, before Dash sees it (Dash would answer the app's page, or fail with the path).

Wrong passwords are throttled (see `throttle`): a try that must wait is answered 429 with
Retry-After, before the password is checked. Every sign-in, failure, throttled try and
sign-out is recorded in the store's auth_events.

Every response also says: never cache (patient data must not stay in a shared browser's
cache), never frame (clickjacking on the alert buttons), never send a referrer (URLs hold
encounter ids).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import flask
from markupsafe import escape
from werkzeug.security import safe_join

from riskcast.dashboards import auth, auth_events, throttle
from riskcast.dashboards.context import context

PUBLIC_PATHS = frozenset({"/login", "/logout", "/_favicon.ico", "/favicon.ico"})
ASSETS_PREFIX = "/assets/"
SUITES_PREFIX = "/_dash-component-suites/"
PUBLIC_PREFIXES = (ASSETS_PREFIX, SUITES_PREFIX)
HSTS_SECONDS = 365 * 24 * 3600
_CSRF = "csrf"
_NEXT = "next"

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · riskcast</title>
<link rel="stylesheet" href="/assets/riskcast.css">
</head>
<body class="rc-signin-body">
<main class="rc-signin">
  <h1><span class="rc-brand-mark" aria-hidden="true"></span>riskcast</h1>
  <p class="rc-muted">Early warning of deterioration. Sign in with your riskcast account.</p>
  {error}
  <form method="post" action="/login" autocomplete="off">
    <input type="hidden" name="csrf" value="{csrf}">
    <label for="username">Username</label>
    <input id="username" name="username" type="text" autocapitalize="none" spellcheck="false"
           required autofocus value="{username}">
    <label for="password">Password</label>
    <input id="password" name="password" type="password" required>
    <button id="signin-submit" type="submit" class="rc-button rc-button-primary">Sign in</button>
  </form>
</main>
</body>
</html>
"""


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _safe_next(target: object) -> str | None:
    """A dashboard page to return to after sign-in (/data-health, /patient/<id>, /model,
    /model/<version>, /fairness); None for anything else (other sites, Dash's own routes,
    a favicon request)."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    if parts.path in ("/data-health", "/model", "/fairness") or re.fullmatch(r"/(patient|model)/[^/]{1,200}", parts.path):
        return parts.path
    return None


def _static_file_gate(assets_dir: Path, is_component_file: Callable[[str, str], bool]) -> Callable[[], flask.Response | None]:
    """A before-request hook: an empty 404 for a static path that names no file."""

    def check() -> flask.Response | None:
        path = flask.request.path
        if path.startswith(ASSETS_PREFIX):
            found = safe_join(str(assets_dir), path[len(ASSETS_PREFIX):])
            known = found is not None and Path(found).is_file()
        elif path.startswith(SUITES_PREFIX):
            package, _, file_path = path[len(SUITES_PREFIX):].partition("/")
            known = bool(package and file_path) and is_component_file(package, file_path)
        else:
            return None
        return None if known else flask.Response(b"", status=404)

    return check


def _gate() -> flask.Response | None:
    path = flask.request.path
    if _is_public(path) or auth.current_user() is not None:
        return None
    if flask.request.method == "GET" and not path.startswith("/_"):
        target = _safe_next(path)
        if target:
            flask.session[_NEXT] = target
        return flask.redirect("/login")
    return flask.Response(b"", status=401)


def _headers(response: flask.Response) -> flask.Response:
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not flask.request.path.startswith(PUBLIC_PREFIXES):
        response.headers["Cache-Control"] = "no-store"
    if flask.request.is_secure and context().security.cookie_secure != "never":
        response.headers["Strict-Transport-Security"] = f"max-age={HSTS_SECONDS}"
    return response


def _wait_text(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{round(seconds / 60)} minutes"


def _render(error: str = "", username: str = "", status: int = 200) -> flask.Response:
    token = flask.session.get(_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        flask.session[_CSRF] = token
    block = f'<p class="rc-signin-error" role="alert">{escape(error)}</p>' if error else ""
    html = _PAGE.format(error=block, csrf=escape(token), username=escape(username))
    return flask.Response(html, status=status, mimetype="text/html")


def _login() -> flask.Response:
    user = auth.current_user()
    if flask.request.method == "GET":
        if user is not None:
            return flask.redirect(user.home)
        return _render()
    form = flask.request.form
    expected = flask.session.get(_CSRF)
    if not isinstance(expected, str) or not secrets.compare_digest(expected, form.get("csrf", "")):
        return _render("Your sign-in form expired. Please try again.", status=400)
    ctx = context()
    typed = form.get("username", "")
    name = auth.typed_name(typed)
    address = flask.request.remote_addr
    now = ctx.session_clock()
    refused = throttle.refusal(ctx.engine, name, address, now=now, policy=ctx.security.throttle)
    if refused is not None:
        throttle.record_refusal(ctx.engine, refused, name, address, now=now)
        response = _render(f"Too many failed sign-ins {'for this account' if refused.scope == 'user' else 'from this computer'}. "
                           f"Try again in {_wait_text(refused.retry_after_seconds)}.", username=typed, status=429)  # fmt: skip
        response.headers["Retry-After"] = str(refused.retry_after_seconds)
        return response
    signed_in = auth.authenticate(ctx.engine, typed, form.get("password", ""))
    if signed_in is None:
        auth_events.record(ctx.engine, "sign_in_failed", username=name, address=address, now=now)
        return _render("Wrong username or password, or the account is disabled.", username=typed, status=401)
    target = _safe_next(flask.session.get(_NEXT))
    auth.sign_in(signed_in)
    page = "patient" if target and target.startswith("/patient/") else ("data-health" if target == "/data-health" else "ward")
    return flask.redirect(target if target and signed_in.may_open(page) else signed_in.home)


def _favicon() -> flask.Response:
    return flask.redirect("/_favicon.ico")


def _logout() -> flask.Response:
    auth.sign_out()
    return flask.redirect("/login")


def install(server: flask.Flask, *, assets_dir: Path, is_component_file: Callable[[str, str], bool]) -> None:
    """Add /login and /logout, the static-file check and the gate (before every request) and
    the safety headers. `is_component_file(package, path)` says whether Dash serves that file
    of a component suite."""
    server.add_url_rule("/login", "riskcast_login", _login, methods=["GET", "POST"])
    server.add_url_rule("/logout", "riskcast_logout", _logout, methods=["GET", "POST"])
    server.add_url_rule("/favicon.ico", "riskcast_favicon", _favicon)
    server.before_request(_static_file_gate(assets_dir, is_component_file))
    server.before_request(_gate)
    server.after_request(_headers)
