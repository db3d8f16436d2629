"""Text made safe to print on one line: control characters escaped.

A file name, a column name or a message may hold a newline, a carriage return, an ANSI escape
or a right-to-left override; printed as they are, they forge lines of output or logs (a file
named "x.csv\n  observations.csv line 2: ..." would print a fake quarantine line). `printable`
writes each such character as a Python-style escape (\n, \x1b, \u202e) and a backslash as
\\, so the output is unambiguous and every record stays on its own line.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def printable(text: object) -> str:
    """`text` as a string with control, format, separator and unassigned characters escaped."""
    value = str(text)
    if value.isprintable() and "\\" not in value:
        return value
    return "".join(_escape(ch) for ch in value)


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    if ch == " " or unicodedata.category(ch)[0] not in ("C", "Z"):
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
