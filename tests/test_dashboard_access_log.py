"""riskcast.dashboards.access_log: request lines keep their route and lose encounter ids, served
by a real server over the small dashboard home's app."""

from __future__ import annotations

import logging
import re
import threading
import urllib.error
import urllib.request
from http.cookiejar import CookieJar

import pytest
from werkzeug.serving import make_server

from dashboard_home import PASSWORD, app, home  # noqa: F401 - fixtures
from riskcast.dashboards.access_log import redact_path


def test_the_access_log_shows_no_encounter_ids(app, caplog):
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            token = re.search(r'name="csrf" value="([^"]+)"', opener.open(f"{base}/login").read().decode()).group(1)
            data = f"csrf={token}&username=nina&password={PASSWORD.replace(' ', '+')}".encode()
            opener.open(f"{base}/login", data=data).read()
            opener.open(f"{base}/patient/E1?from=E3").read()
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(f"{base}/_dash-update-component?id=E3", data=b"{}")
    finally:
        server.shutdown()
        thread.join()
    lines = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert any("GET /patient/…" in line for line in lines)
    assert not any("E1" in line or "E3" in line for line in lines)


def test_request_paths_keep_only_their_route(tmp_path):
    assert redact_path("/patient/E0000249?x=1") == "/patient/…?…"
    assert redact_path("/E0000249") == "/…"
    assert redact_path("/_dash-update-component") == "/_dash-update-component"
