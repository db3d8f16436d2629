"""riskcast.store.accounts, riskcast.store.dashboard_sessions and riskcast.store.sign_in_events:
the named queries the dashboard's sign-in reads and writes the store through.

Each test runs on a SQLite file and, when a server answers at 127.0.0.1:5432/test, on
PostgreSQL (the `store` fixture). Hashes here are stand-ins: the store keeps what it is
given; hashing and checking passwords is riskcast.dashboards.auth's job.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from riskcast.store import accounts, dashboard_sessions, sign_in_events, write_transaction

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
HASH = "$argon2id$stand-in"


def add_nina(store: Engine, *, wards: tuple[str, ...] = ("north-1",)) -> None:
    accounts.insert_user(store, "nina", password_hash=HASH, role="nurse", wards=wards, created_at=NOW)


# ------------------------------------------------------------------------------ accounts


def test_a_user_reads_back_as_stored_and_unknown_names_find_nobody(store):
    add_nina(store, wards=("north-1", "north-2"))
    found = accounts.find_user(store, "nina")
    assert found == accounts.UserRecord("nina", "nurse", ("north-1", "north-2"), True, NOW, HASH)
    assert accounts.find_user(store, "Nina") is None and accounts.find_user(store, "nobody") is None


def test_a_user_record_never_shows_its_hash_in_its_repr(store):
    add_nina(store)
    assert HASH not in repr(accounts.find_user(store, "nina"))


def test_a_name_is_stored_once(store):
    add_nina(store)
    with pytest.raises(IntegrityError):
        add_nina(store)
    assert accounts.count_users(store) == 1


def test_users_are_listed_and_counted_by_name_active_or_not(store):
    for name in ("zoe", "adam"):
        accounts.insert_user(store, name, password_hash=HASH, role="admin", wards=(), created_at=NOW)
    assert accounts.set_user_active(store, "zoe", active=False)
    assert [(u.username, u.active) for u in accounts.list_users(store)] == [("adam", True), ("zoe", False)]
    assert accounts.count_users(store) == 2


def test_a_reset_changes_hash_role_and_wards_and_makes_the_user_active_again(store):
    add_nina(store)
    accounts.set_user_active(store, "nina", active=False)
    assert accounts.reset_user(store, "nina", password_hash="$argon2id$new", role="physician", wards=())
    found = accounts.find_user(store, "nina")
    assert (found.password_hash, found.role, found.wards, found.active, found.created_at) == (
        "$argon2id$new", "physician", (), True, NOW)  # fmt: skip


def test_changing_a_user_who_does_not_exist_says_so(store):
    assert not accounts.reset_user(store, "nobody", password_hash=HASH, role="admin", wards=())
    assert not accounts.set_user_active(store, "nobody", active=False)


def test_a_rehash_replaces_only_the_hash(store):
    add_nina(store)
    accounts.replace_password_hash(store, "nina", "$argon2id$stronger")
    assert accounts.find_user(store, "nina") == accounts.UserRecord("nina", "nurse", ("north-1",), True, NOW,
                                                                    "$argon2id$stronger")  # fmt: skip


def test_the_table_allows_only_the_known_roles(store):
    with pytest.raises(IntegrityError):
        accounts.insert_user(store, "eve", password_hash=HASH, role="root", wards=(), created_at=NOW)
    assert "root" not in accounts.USER_ROLES


# -------------------------------------------------------------------- dashboard sessions


def open_session(store: Engine, session_id: str = "digest-1", *, at: datetime = NOW, hours: float = 12) -> None:
    dashboard_sessions.insert_session(store, session_id, "nina", now=at, expires_at=at + timedelta(hours=hours),
                                      address="10.0.0.7")  # fmt: skip


def test_a_session_reads_back_with_the_times_that_decide_whether_it_is_open(store):
    add_nina(store)
    open_session(store)
    assert dashboard_sessions.find_session(store, "digest-1") == dashboard_sessions.SessionRecord(
        "nina", NOW, NOW, NOW + timedelta(hours=12), None)  # fmt: skip
    assert dashboard_sessions.find_session(store, "digest-2") is None


def test_touching_a_session_moves_only_its_last_use(store):
    add_nina(store)
    open_session(store)
    dashboard_sessions.touch_session(store, "digest-1", now=NOW + timedelta(minutes=5))
    found = dashboard_sessions.find_session(store, "digest-1")
    assert (found.created_at, found.last_active_at) == (NOW, NOW + timedelta(minutes=5))


def test_a_session_is_revoked_once_and_names_its_user_that_time(store):
    add_nina(store)
    open_session(store)
    later = NOW + timedelta(minutes=1)
    assert dashboard_sessions.revoke_session(store, "digest-1", now=later) == "nina"
    assert dashboard_sessions.revoke_session(store, "digest-1", now=later + timedelta(minutes=1)) is None
    assert dashboard_sessions.revoke_session(store, "no-such-digest", now=later) is None
    assert dashboard_sessions.find_session(store, "digest-1").revoked_at == later


def test_revoking_a_users_sessions_counts_those_still_open_expired_ones_included(store):
    add_nina(store)
    open_session(store, "digest-1")
    open_session(store, "digest-2", at=NOW - timedelta(days=2))  # expired, not revoked
    open_session(store, "digest-3")
    dashboard_sessions.revoke_session(store, "digest-3", now=NOW)
    assert dashboard_sessions.revoke_user_sessions(store, "nina", now=NOW) == 2
    assert dashboard_sessions.revoke_user_sessions(store, "nina", now=NOW) == 0


def test_only_sessions_that_ended_before_the_cutoff_are_forgotten(store):
    add_nina(store)
    open_session(store, "old", at=NOW - timedelta(days=3))
    open_session(store, "recent")
    assert dashboard_sessions.delete_sessions_expired_before(store, NOW - timedelta(hours=12)) == 1
    assert dashboard_sessions.find_session(store, "old") is None
    assert dashboard_sessions.find_session(store, "recent") is not None


def test_a_reset_and_the_end_of_its_sessions_commit_together_or_not_at_all(store):
    add_nina(store)
    open_session(store)
    with pytest.raises(RuntimeError), write_transaction(store) as connection:
        accounts.reset_user(connection, "nina", password_hash="$argon2id$new", role="nurse", wards=("north-1",))
        dashboard_sessions.revoke_user_sessions(connection, "nina", now=NOW)
        sign_in_events.append_event(connection, "sessions_revoked", username="nina", address=None, now=NOW)
        raise RuntimeError("fails before the commit")
    assert accounts.find_user(store, "nina").password_hash == HASH
    assert dashboard_sessions.find_session(store, "digest-1").revoked_at is None
    assert sign_in_events.last_sign_in(store, "nina") is None


# ---------------------------------------------------------------------- sign-in events


def fail(store: Engine, at: datetime, *, username: str | None = "nina", address: str = "10.0.0.7") -> None:
    sign_in_events.append_event(store, "sign_in_failed", username=username, address=address, now=at)


def test_an_unknown_event_is_refused_with_the_known_ones_named(store):
    with pytest.raises(ValueError, match="unknown sign-in event 'hacked'; expected one of signed_in, sign_in_failed"):
        sign_in_events.append_event(store, "hacked", username=None, address=None, now=NOW)


def test_failures_are_counted_strictly_after_the_time_given_with_the_last_one(store):
    for minutes in (0, 1, 2):
        fail(store, NOW + timedelta(minutes=minutes))
    fail(store, NOW + timedelta(minutes=3), username="bob")
    assert sign_in_events.failures_of_user(store, "nina", after=NOW) == sign_in_events.Failures(2, NOW + timedelta(minutes=2))
    assert sign_in_events.failures_of_user(store, "ann", after=NOW - timedelta(hours=1)) == sign_in_events.Failures(0, None)


def test_failures_from_an_address_count_every_name_tried_from_it(store):
    fail(store, NOW, username="ann")
    fail(store, NOW + timedelta(minutes=1), username=None)
    fail(store, NOW + timedelta(minutes=2), username="bob", address="10.0.0.8")
    found = sign_in_events.failures_from_address(store, "10.0.0.7", after=NOW - timedelta(hours=1))
    assert found == sign_in_events.Failures(2, NOW + timedelta(minutes=1))


def test_the_last_sign_in_is_the_latest_signed_in_event_of_that_user(store):
    for minutes, event in ((0, "signed_in"), (5, "signed_out"), (9, "sign_in_failed"), (3, "signed_in")):
        sign_in_events.append_event(store, event, username="nina", address=None, now=NOW + timedelta(minutes=minutes))
    assert sign_in_events.last_sign_in(store, "nina") == NOW + timedelta(minutes=3)
    assert sign_in_events.last_sign_in(store, "bob") is None


def test_a_throttled_try_counts_from_the_time_given_itself_included(store):
    sign_in_events.append_event(store, "sign_in_throttled", username="nina", address="10.0.0.7", now=NOW)
    assert sign_in_events.throttled_user_since(store, "nina", since=NOW)
    assert not sign_in_events.throttled_user_since(store, "nina", since=NOW + timedelta(seconds=1))
    assert sign_in_events.throttled_address_since(store, "10.0.0.7", since=NOW)
    assert not sign_in_events.throttled_address_since(store, "10.0.0.8", since=NOW)
    assert not sign_in_events.throttled_user_since(store, "bob", since=NOW - timedelta(hours=1))
