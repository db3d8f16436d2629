"""The inbox: which entries are ready to ingest, and where each goes after its ingest.

Files and folders dropped directly in `<home>/inbox` are ingested once settled. Afterwards an
entry goes to `<home>/archive/<batch>/` when some of it could be read (its bad rows, lines or
files are in that batch's quarantine), or to `<home>/inbox/rejected/` when nothing of it could
be ingested at all: no file of it is recognised, no file of it can be read, or it holds no
rows. A rejected entry gets a note beside it, `<name>.why.txt`, saying why (file, line and
rule, never a value), and the system alert "ingest:rejected" stays open while the folder
holds any entry, so a person sees it; the next entries go on either way.

If ingesting the entries together fails on their content, each is ingested on its own, so one
entry never blocks the others; a failure of the lake, the store or the disk is not the
entries' fault and fails the run with every entry left in place.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from riskcast.errors import ConfigError, IngestError, LakeError, RiskcastError, StoreError
from riskcast.printable import printable

log = logging.getLogger(__name__)

NOT_READY_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", ".swp")
INBOX = "inbox"
REJECTED = "rejected"
NOTE_SUFFIX = ".why.txt"
ALERT_SUBJECT = "ingest:rejected"
_NAMES_IN_ALERT = 3
_INFRASTRUCTURE_ERRORS = (LakeError, StoreError, ConfigError, OSError, MemoryError)


@dataclass(frozen=True)
class Ingested:
    """One ingest over some inbox entries: the entries, and what ingest_paths returned."""

    entries: list[Path]
    summary: Any  # riskcast.pipeline.ingest.IngestSummary
    quarantine: Any  # polars.DataFrame


@dataclass(frozen=True)
class InboxOutcome:
    """What became of the ready entries: ingests that committed, and the entries refused with why."""

    ingested: list[Ingested] = field(default_factory=list)
    refused: dict[Path, list[str]] = field(default_factory=dict)


def newest_mtime(path: Path) -> float:
    """When a file, or the newest file in a folder, last changed (seconds since the epoch)."""
    if path.is_file():
        return path.stat().st_mtime
    times = [path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*")]
    return max(times)


def ready_entries(inbox: Path, *, now: datetime, settle_seconds: float) -> list[Path]:
    """Files and folders directly in `inbox` that are complete: not hidden, not a partial
    download (.tmp, .part, ...), not the rejected/ folder, and unchanged for `settle_seconds`
    (their newest file)."""
    if not inbox.is_dir():
        return []
    cutoff = now.timestamp() - settle_seconds
    ready = []
    for entry in sorted(inbox.iterdir()):
        name = entry.name.lower()
        if entry.name.startswith((".", "_")) or name.endswith(NOT_READY_SUFFIXES) or entry.name == REJECTED:
            continue
        try:
            if newest_mtime(entry) <= cutoff:
                ready.append(entry)
        except FileNotFoundError:  # moved away while we looked
            continue
    return ready


def ingest_entries(entries: list[Path], ingest: Callable[[list[Path]], tuple[Any, Any]]) -> InboxOutcome:
    """Ingest the entries together with `ingest` (ingest_paths with its options bound); when that
    fails on the content, each entry on its own. Entries nothing of which could be ingested are
    refused, with the reasons as lines of text."""
    try:
        return _sorted_out([Ingested(entries, *ingest(entries))])
    except _INFRASTRUCTURE_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - some entry's content: find which, let the others go on
        log.warning("ingest of %d inbox entries together failed (%s); ingesting each on its own", len(entries),
                    type(exc).__name__)
    ingested: list[Ingested] = []
    refused: dict[Path, list[str]] = {}
    for entry in entries:
        try:
            ingested.append(Ingested([entry], *ingest([entry])))
        except _INFRASTRUCTURE_ERRORS:
            raise
        except RiskcastError as exc:  # riskcast's own messages name files and rules, never values
            refused[entry] = [str(exc)]
        except Exception as exc:  # noqa: BLE001 - an unexpected error's message may quote the file
            log.debug("ingest of an inbox entry failed", exc_info=True)
            refused[entry] = [f"ingest failed ({type(exc).__name__}); the scheduler's log at DEBUG has the traceback"]
    outcome = _sorted_out(ingested)
    return InboxOutcome(outcome.ingested, {**refused, **outcome.refused})


def _sorted_out(ingested: list[Ingested]) -> InboxOutcome:
    """Refuse the entries of committed ingests that no file of which was recognised or readable."""
    refused: dict[Path, list[str]] = {}
    for attempt in ingested:
        for entry in attempt.entries:
            mine = sources_of(entry, attempt.summary.sources)
            if not mine:
                refused[entry] = [_not_recognised(entry)]
            elif all(not s["readable"] for s in mine):
                refused[entry] = [reason for s in mine for reason in _why_unreadable(s)]
    return InboxOutcome(ingested, refused)


def _why_unreadable(source: dict[str, Any]) -> list[str]:
    """An unreadable source's problems, saying so when they were found when its content came before."""
    problems = source.get("problems") or [f"{Path(source['path']).name}: no file in it could be read"]
    if source["status"] != "already ingested":
        return problems
    return [
        f"{Path(source['path']).name}: the same content came before (batch {source['batch_id']}) and could not be "
        "read then:",
        *(f"  {problem}" for problem in problems),
    ]


def _not_recognised(entry: Path) -> str:
    from riskcast.ingest import discover

    try:
        discover([entry])
    except IngestError as exc:
        return str(exc)
    return f"{entry.name}: no file in it is recognised as a table"


def sources_of(entry: Path, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary's source rows that are the entry or lie inside it."""
    return [s for s in sources if Path(s["path"]) == entry or entry in Path(s["path"]).parents]


def batch_of(entry: Path, sources: list[dict[str, Any]], new_batch: str | None) -> str:
    """The batch an inbox entry went into: the new batch if any of its files was new."""
    mine = sources_of(entry, sources)
    if new_batch and any(s["status"] != "already ingested" for s in mine):
        return new_batch
    earlier = sorted(s["batch_id"] for s in mine if s.get("batch_id"))
    return earlier[0] if earlier else (new_batch or "unmatched")


def move_aside(entry: Path, folder: Path) -> Path:
    """Move an entry into `folder` under its name, or name-1, name-2, ... when that is taken."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / entry.name
    counter = 1
    while target.exists() or _note_of(target).exists():
        target = folder / f"{entry.stem}-{counter}{entry.suffix}"
        counter += 1
    shutil.move(str(entry), str(target))
    return target


def reject(entry: Path, reasons: list[str], *, inbox: Path, now: datetime, scheduled_for: datetime) -> Path:
    """Move an entry to inbox/rejected/ and write the note of why beside it (owner-only)."""
    target = move_aside(entry, inbox / REJECTED)
    lines = [
        f"riskcast could not ingest this inbox entry: {printable(entry.name)}",
        f"when: {now.isoformat()} (the ingest run scheduled for {scheduled_for.isoformat()})",
        "why:",
        *(f"  {printable(reason)}" for reason in reasons),
        "",
        "Fix it and drop it into the inbox again, or delete it and this note. The system alert",
        f'"{ALERT_SUBJECT}" stays open while {REJECTED}/ holds an entry.',
    ]
    note = _note_of(target)
    descriptor = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    log.warning("inbox entry %s could not be ingested: moved to %s/ with a note of why", printable(entry.name), REJECTED)
    return target


def _note_of(path: Path) -> Path:
    return path.with_name(path.name + NOTE_SUFFIX)


def rejected_entries(inbox: Path) -> list[Path]:
    """The entries waiting in inbox/rejected/ (not their notes)."""
    folder = inbox / REJECTED
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.endswith(NOTE_SUFFIX))


def rejected_problem(inbox: Path) -> str | None:
    """The system alert's text while inbox/rejected/ holds entries, else None."""
    waiting = rejected_entries(inbox)
    if not waiting:
        return None
    names = ", ".join(printable(p.name) for p in waiting[:_NAMES_IN_ALERT])
    if len(waiting) > _NAMES_IN_ALERT:
        names += f" and {len(waiting) - _NAMES_IN_ALERT} more"
    count = "1 inbox entry could not be ingested and waits" if len(waiting) == 1 else (
        f"{len(waiting)} inbox entries could not be ingested and wait"
    )
    return f"{count} in {INBOX}/{REJECTED}/ with a note of why beside each: {names}"
