"""The dashboard app: `create_app(settings)` builds it, `serve(settings)` runs it.

This module only builds the shell (Dash Pages, the sign-in gate, the session, the log
filter); each file in pages/ registers itself and owns its layout and callbacks, and every
page asks riskcast.pipeline.views for its data when it is drawn (nothing is loaded here).

    from riskcast.dashboards.app import serve
    serve(settings, port=8050)          # prints the URL and, on first run, demo sign-ins

For production, serve `create_app(settings).server` (a WSGI app) with a real WSGI server
behind HTTPS, and create users with `riskcast users add`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from dash import Dash

from riskcast.alerts.policy import PolicySet, load_policy
from riskcast.catalog import load_catalog
from riskcast.clock import wall_clock
from riskcast.config import Settings
from riskcast.dashboards import access_log, auth, signin
from riskcast.dashboards.components.shell import shell
from riskcast.dashboards.context import EXTENSION, DashboardContext
from riskcast.lake import Lake
from riskcast.model import ModelRegistry
from riskcast.pipeline import views
from riskcast.store import open_store

HERE = Path(__file__).parent
PAGES_DIR = HERE / "pages"
ASSETS_DIR = HERE / "assets"
SESSION_HOURS = 12
"""How long a sign-in lasts: one shift."""


def create_app(
    settings: Settings, *, clock: Callable[[], datetime] | None = None, policy_set: PolicySet | None = None
) -> Dash:
    """The Dash app over `settings`' store, lake and models. Opens (and migrates) the store
    and makes the session key on first use; reads no patient data.

    `clock` gives "now" (UTC) for freshness and for the time of staff actions (default: the
    wall clock); `policy_set` is the alert policy (default: the packaged one, as scoring uses).
    """
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
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        # Only sign-in and sign-out set the cookie: a callback answered after a sign-out
        # cannot bring the old session back, and a sign-in ends after SESSION_HOURS.
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    server.extensions[EXTENSION] = context_
    signin.install(server)
    access_log.install(server.logger)
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
    board = views.ward_board(context_.engine, model_version=model.version, now=context_.clock())
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
) -> None:
    """Run the dashboard until interrupted, printing its URL. On first run (no users in the
    store) and with `demo_users`, create demo-nurse, demo-physician and demo-admin with one
    random password, printed once here and stored only hashed."""
    app = create_app(settings, clock=clock)
    context_: DashboardContext = app.server.extensions[EXTENSION]
    created = None
    if demo_users:
        created = auth.create_demo_users(context_.engine, nurse_ward=_demo_nurse_ward(context_), now=context_.clock())
    shown_host = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    print(f"riskcast dashboard: http://{shown_host}:{port}/", flush=True)
    if created:
        password, usernames = created
        print(f"  first run: created the demo sign-ins {', '.join(usernames)}", flush=True)
        print(f"  password (shown only now): {password}", flush=True)
        print("  add real users with `riskcast users add NAME --role nurse --ward WARD`", flush=True)
    elif auth.count_users(context_.engine) == 0:
        print("  no users yet: add one with `riskcast users add NAME --role nurse --ward WARD`", flush=True)
    print("  press Ctrl+C to stop", flush=True)
    app.run(host=host, port=port, debug=False)
