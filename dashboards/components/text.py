"""Numbers and times as ward staff read them: risk in whole percent, local clock times,
"12 min ago". Formatting only; the values come from riskcast.read_models."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

from riskcast.score_status import ScoreStatus

INSUFFICIENT_LABEL = "Insufficient data"
STATE_LABELS = {
    "new": "New",
    "escalated": "Escalated",
    "acknowledged": "Acknowledged",
    "snoozed": "Snoozed",
    "resolved": "Resolved",
}
KIND_LABELS = {"risk": "Risk alert", "stale_data": "Vitals overdue", "system": "System alert"}
ACTION_LABELS = {
    "raised": "Raised",
    "acknowledged": "Acknowledged",
    "snoozed": "Snoozed",
    "escalated": "Escalated",
    "resolved": "Resolved",
    "re_alerted": "Re-alerted (risk rose)",
    "reopened": "Reopened (snooze ended)",
    "moved": "Moved with the patient",
}
TREND_SYMBOLS = {"rising": "▲", "falling": "▼", "steady": "▶"}
TREND_WORDS = {"rising": "rising", "falling": "falling", "steady": "steady"}


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def risk_text(risk: float | None, status: str | None) -> str:
    """"23%", "<1%", or "Insufficient data" (never a number for a patient without one)."""
    if status == ScoreStatus.INSUFFICIENT_DATA or _missing(risk):
        return INSUFFICIENT_LABEL
    assert risk is not None
    percent = risk * 100.0
    if 0 < percent < 1:
        return "<1%"
    return f"{percent:.0f}%"


def change_text(change: float | None) -> str:
    """A change of risk in percentage points: "+3 pts", "−2 pts", "±0"."""
    if _missing(change):
        return ""
    assert change is not None
    points = round(change * 100.0)
    if points == 0:
        return "±0"
    return f"+{points} pts" if points > 0 else f"−{abs(points)} pts"


def trend_text(trend: str | None, change: float | None) -> str:
    """"▲ +3 pts" for a rising risk; "–" when there is no previous score to compare with."""
    if trend is None:
        return "–"
    return f"{TREND_SYMBOLS.get(trend, '')} {change_text(change)}".strip()


def clock_text(moment: datetime | None, zone: ZoneInfo, *, now: datetime | None = None) -> str:
    """"14:05" today (in `zone`), "14 Jan 14:05" on another day; "" for no time."""
    if moment is None:
        return ""
    local = moment.astimezone(zone)
    if now is not None and local.date() == now.astimezone(zone).date():
        return f"{local:%H:%M}"
    return f"{local:%d %b %H:%M}"


def ago_text(moment: datetime | None, now: datetime) -> str:
    """"just now", "12 min ago", "3 h ago", "2 days ago"; "in 5 min" for the future."""
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        amount = f"{int(seconds // 60)} min"
    elif seconds < 48 * 3600:
        amount = f"{int(seconds // 3600)} h"
    else:
        amount = f"{int(seconds // 86400)} days"
    return f"in {amount}" if future else f"{amount} ago"


def hours_text(hours: float | None) -> str:
    """A duration in hours as "45 min", "6 h", "3 days"."""
    if _missing(hours):
        return ""
    assert hours is not None
    if hours < 1:
        return f"{max(0, round(hours * 60))} min"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.0f} days"


def value_text(value: float | None, decimals: int, unit: str) -> str:
    """A measurement with the catalogue's display decimals and unit: "37.2 °C"."""
    if _missing(value):
        return ""
    assert value is not None
    number = f"{value:.{max(0, decimals)}f}"
    return f"{number} {unit}".strip() if unit and unit != "%" else f"{number}{unit}"


def zone_name(zone: ZoneInfo) -> str:
    """The zone's name as shown next to times ("UTC", "Europe/London")."""
    return str(zone.key) if hasattr(zone, "key") else str(zone)


_MARKDOWN_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def markdown_text(text: str) -> str:
    """`text` for a Markdown cell, shown as it is: every ASCII punctuation mark backslash-
    escaped (CommonMark renders each as itself), control characters (line breaks) as U+FFFD.
    An id such as `Y](https://evil.example/phish)` stays text, never a link."""
    out = []
    for character in text:
        if character in _MARKDOWN_PUNCTUATION:
            out.append("\\" + character)
        elif ord(character) < 32 or ord(character) == 127:
            out.append("\ufffd")
        else:
            out.append(character)
    return "".join(out)


def markdown_link(text: str, href: str) -> str:
    """A Markdown link showing `text` (escaped) to `href`, which the caller percent-encodes
    (it may hold no brackets, parentheses, angle brackets or whitespace)."""
    if any(c in href for c in "[]()<> \t\r\n\\"):
        raise ValueError("markdown_link: percent-encode the href first")
    return f"[{markdown_text(text)}]({href})"
