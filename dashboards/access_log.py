"""Keep patient identifiers out of the web server's log.

Werkzeug (Flask's development server, which `riskcast serve` runs) logs one line per request
with the full request line, e.g. `"GET /patient/E0000249 HTTP/1.1" 200`, and Flask logs
`Exception on /patient/E0000249 [GET]`. Encounter ids are in the patient page's URL, so
the filter here rewrites every request path in those records down to its first segment
(`/patient/…`) and drops query strings. Method, status and size stay, so the log still
shows traffic and errors. Callback payloads (POST bodies) are never logged.
"""

from __future__ import annotations

import logging
import re

REDACTED = "…"
KNOWN_SEGMENTS = frozenset({"patient", "data-health", "login", "logout", "assets", "_favicon.ico", "_reload-hash"})
"""First path segments kept in the log; any other (a mistyped id, say) is redacted too."""
# Werkzeug colours some request lines: an ANSI escape may sit between the quote and the method.
_REQUEST_LINE = re.compile(
    r"""(?P<quote>["'])(?P<ansi>(?:\x1b\[[0-9;]*m)*)(?P<method>[A-Z]{3,7}) (?P<target>[^\s"']+)(?P<rest>[^"']*)(?P=quote)"""
)
_FLASK_EXCEPTION = re.compile(r"(?P<head>Exception on )(?P<target>\S+)(?P<tail> \[[A-Z]+\])")


def redact_path(target: str) -> str:
    """`/patient/E1?x=1` -> `/patient/…?…`; `/E1` -> `/…`; `/`, `/data-health` and Dash's
    own routes (`/_dash-…`) stay."""
    path, has_query, _query = target.partition("?")
    head, slash, rest = path.lstrip("/").partition("/")
    known = not head or head in KNOWN_SEGMENTS or head.startswith("_dash")
    redacted = "/" + (head if known else REDACTED)
    if slash and rest:
        redacted += "/" + REDACTED
    elif slash:
        redacted += "/"
    if has_query:
        redacted += "?" + REDACTED
    return redacted


class RedactRequestPaths(logging.Filter):
    """Rewrites request paths in werkzeug access lines and Flask exception lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _REQUEST_LINE.sub(
            lambda m: f"{m['quote']}{m['ansi']}{m['method']} {redact_path(m['target'])}{m['rest']}{m['quote']}", message
        )
        redacted = _FLASK_EXCEPTION.sub(lambda m: f"{m['head']}{redact_path(m['target'])}{m['tail']}", redacted)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def install(*loggers: logging.Logger) -> None:
    """Attach one RedactRequestPaths to werkzeug's logger and each of `loggers` (idempotent)."""
    for logger in (logging.getLogger("werkzeug"), *loggers):
        if not any(isinstance(f, RedactRequestPaths) for f in logger.filters):
            logger.addFilter(RedactRequestPaths())
