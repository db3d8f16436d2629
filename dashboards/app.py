"""The dashboard app: `create_app(settings)` builds it, `serve(settings)` runs it.

This module only builds the shell (Dash Pages, the sign-in gate, the session, the log
filter, the handler of unexpected errors); each file in pages/ registers itself and owns its
layout and callbacks, and every page asks riskcast.read_models for its data when it is
drawn (nothing is loaded here).

    from riskcast.dashboards.app import serve
    serve(settings, port=8050)          # prints the URL and, on first run, demo sign-ins

`serve` runs the app on waitress, a production WSGI server (a pool of `threads`, idle
connections closed after `channel_timeout_seconds`, request bodies capped), which trusts
X-Forwarded-For and X-Forwarded-Proto only from `trusted_proxy`: put it behind a reverse
proxy that terminates TLS (README, "Security"). `create_app(settings).server` is a plain
WSGI app for any other server. Create users with `riskcast users add`.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import flask
from dash import Dash
from dash.fingerprint import check_fingerprint
from werkzeug.exceptions import HTTPException

from riskcast.alerts.policy import PolicySet, load_policy
from riskcast.catalog import load_catalog
from riskcast.clock import wall_clock
from riskcast.config import Settings
from riskcast.dashboards import access_log, auth, signin
from riskcast.dashboards.components.shell import shell
from riskcast.dashboards.context import EXTENSION, DashboardContext, SecurityOptions
from riskcast.dashboards.sessions import SessionCookies
from riskcast import read_models
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.store import open_store

HERE = Path(__file__).parent
PAGES_DIR = HERE / "pages"
ASSETS_DIR = HERE / "assets"
SERVER_THREADS = 8
"""Requests answered at once (waitress's worker threads); more wait in its queue."""
CHANNEL_TIMEOUT_SECONDS = 60
"""A connection that sends nothing for this long is closed (slow or stuck clients)."""
CONNECTION_LIMIT = 200
MAX_REQUEST_BODY_BYTES = 1024 * 1024
"""The largest request accepted (callbacks send a few kilobytes; the dashboard takes no uploads)."""
LOGGER = logging.getLogger(__name__)


def _where(exc: BaseException, frames: int = 4) -> str:
    """The innermost `frames` places the exception passed through: file, line, function."""
    stack = traceback.extract_tb(exc.__traceback__)[-frames:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(stack))


def _unexpected_error(exc: Exception) -> flask.Response | HTTPException:
    """Answer an unexpected exception with an empty 500, logging its type and where it was
    raised but never its message or values (a database error quotes the values it was given:
    encounter ids). HTTP errors (404, 405…) pass through as they are."""
    if isinstance(exc, HTTPException):
        return exc
    request = flask.request
    LOGGER.error("unexpected %s answering %s %s (message withheld: it may hold patient data) at %s",
                 type(exc).__name__, request.method, access_log.redact_path(request.path), _where(exc))  # fmt: skip
    return flask.Response(b"", status=500)


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
    policy_set: PolicySet | None = None,
    security: SecurityOptions | None = None,
    session_clock: Callable[[], datetime] | None = None,
) -> Dash:
    """The Dash app over `settings`' store, lake and models. Opens (and migrates) the store
    and makes the session key on first use; reads no patient data.

    `clock` gives "now" (UTC) for freshness and for the time of staff actions (default: the
    wall clock); `policy_set` is the alert policy (default: the packaged one, as scoring uses);
    `security` how sessions last and sign-in is throttled (default: SecurityOptions());
    `session_clock` the clock sessions and throttling run on (default: the wall clock, even
    when `clock` is a demo's shifted one).
    """
    security = security or SecurityOptions()
    engine = open_store(settings.database_url)
    context_ = DashboardContext(
        settings=settings,
        engine=engine,
        lake=Lake(settings.lake_dir),
        registry=ModelRegistry(settings.models_dir),
        policy_set=policy_set or load_policy(),
        catalog=load_catalog(),
        clock=clock or wall_clock,
        zone=ZoneInfo(settings.source_timezone),
        security=security,
        session_clock=session_clock or wall_clock,
    )
    app = Dash(
        __name__,
        use_pages=True,
        pages_folder=str(PAGES_DIR),
        assets_folder=str(ASSETS_DIR),
        title="riskcast",
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,
        enable_mcp=False,
    )
    server = app.server
    server.config.update(
        SECRET_KEY=auth.secret_key(settings.home),
        SESSION_COOKIE_NAME="riskcast_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=security.lifetime,
        # Only sign-in and sign-out set the cookie; the session itself (its end, idle time
        # and revocation) lives in the store (see riskcast.dashboards.sessions).
        SESSION_REFRESH_EACH_REQUEST=False,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BODY_BYTES,
    )
    server.session_interface = SessionCookies(security.cookie_secure)
    server.extensions[EXTENSION] = context_

    def is_component_file(package: str, fingerprinted_path: str) -> bool:
        path, _has_fingerprint = check_fingerprint(fingerprinted_path)
        return path in app.registered_paths.get(package, ())

    signin.install(server, assets_dir=ASSETS_DIR, is_component_file=is_component_file)
    server.register_error_handler(Exception, _unexpected_error)
    access_log.install(server.logger, LOGGER)
    app.layout = shell
    # Dash hands the callbacks that page files register (dash.callback) to the first app that
    # serves a request. Claim them now, so two apps built in one process (tests) each get theirs.
    with server.test_request_context("/login"):
        server.preprocess_request()
    return app


def _demo_nurse_ward(context_: DashboardContext) -> str | None:
    """The ward of the most urgent open alert, else the first ward scored: where a demo nurse
    has something to see."""
    model = context_.model()
    board = read_models.ward_board(context_.engine, model_version=model.version, now=context_.clock())
    if board.height == 0:
        return None
    with_alert = board.filter(board["needs_action"])
    return str((with_alert if with_alert.height else board)["ward"][0])


def serve(
    settings: Settings,
    *,
    port: int = 8050,
    host: str = "127.0.0.1",
    clock: Callable[[], datetime] | None = None,
    demo_users: bool = True,
    security: SecurityOptions | None = None,
    threads: int = SERVER_THREADS,
    trusted_proxy: str | None = None,
) -> None:
    """Run the dashboard on waitress until interrupted, printing its URL. On first run (no
    users in the store) and with `demo_users`, create demo-nurse, demo-physician and
    demo-admin with one random password, printed once here and stored only hashed.

    `trusted_proxy` is the address of the reverse proxy in front (e.g. 127.0.0.1): only from
    it are X-Forwarded-For (the client's address, for sign-in throttling) and
    X-Forwarded-Proto (https: the cookie is Secure) believed; from anyone else they are dropped.
    """
    from waitress.server import create_server

    app = create_app(settings, clock=clock, security=security)
    context_: DashboardContext = app.server.extensions[EXTENSION]
    created = None
    if demo_users:
        created = auth.create_demo_users(context_.engine, nurse_ward=_demo_nurse_ward(context_), now=context_.clock())
    proxy: dict[str, object] = {}
    if trusted_proxy:
        proxy = {"trusted_proxy": trusted_proxy, "trusted_proxy_count": 1,
                 "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto"}}  # fmt: skip
    server = create_server(
        app.server,
        host=host,
        port=port,
        threads=threads,
        channel_timeout=CHANNEL_TIMEOUT_SECONDS,
        connection_limit=CONNECTION_LIMIT,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
        ident="riskcast",
        clear_untrusted_proxy_headers=True,
        **proxy,
    )
    shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    print(f"riskcast dashboard: http://{shown_host}:{port}/", flush=True)
    behind = f", behind the proxy at {trusted_proxy}" if trusted_proxy else ""
    print(f"  served by waitress ({threads} threads{behind})", flush=True)
    if created:
        password, usernames = created
        print(f"  first run: created the demo sign-ins {', '.join(usernames)}", flush=True)
        print(f"  password (shown only now): {password}", flush=True)
        print("  add real users with `riskcast users add NAME --role nurse --ward WARD`", flush=True)
    elif auth.count_users(context_.engine) == 0:
        print("  no users yet: add one with `riskcast users add NAME --role nurse --ward WARD`", flush=True)
    print("  press Ctrl+C to stop", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
