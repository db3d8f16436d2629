"""riskcast.dashboards.auth: dashboard users and their roles, passwords kept only as argon2
hashes, the wards a nurse may see, and the session key."""

from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy import select

from dashboard_home import NOW, PASSWORD, WARD_A, WARD_B, home, writable  # noqa: F401 - fixtures
from riskcast.dashboards import auth
from riskcast.errors import ConfigError
from riskcast.store import open_store
from riskcast.store.tables import users


def test_passwords_are_stored_only_as_argon2_hashes(writable):
    engine = open_store(writable.settings.database_url)
    auth.add_user(engine, "Nina", role="nurse", wards=[WARD_A], password=PASSWORD, now=NOW)
    with engine.connect() as connection:
        stored = connection.execute(select(users.c.password_hash).where(users.c.username == "nina")).scalar_one()
    engine.dispose()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_only_the_right_password_of_an_active_user_signs_in(writable):
    engine = open_store(writable.settings.database_url)
    auth.add_user(engine, "nina", role="nurse", wards=[WARD_A], password=PASSWORD, now=NOW)
    assert auth.authenticate(engine, "nina", PASSWORD) == auth.DashboardUser("nina", "nurse", (WARD_A,))
    assert auth.authenticate(engine, "nina", PASSWORD + "!") is None
    assert auth.authenticate(engine, "nobody", PASSWORD) is None
    auth.set_active(engine, "nina", active=False)
    assert auth.authenticate(engine, "nina", PASSWORD) is None
    engine.dispose()


def test_a_nurse_needs_a_ward_and_sees_only_her_wards(writable):
    engine = open_store(writable.settings.database_url)
    with pytest.raises(ConfigError, match="at least one --ward"):
        auth.add_user(engine, "nina", role="nurse", password=PASSWORD, now=NOW)
    engine.dispose()
    nurse = auth.DashboardUser("nina", "nurse", (WARD_A,))
    physician = auth.DashboardUser("phil", "physician", ())
    assert nurse.may_see_ward(WARD_A) and not nurse.may_see_ward(WARD_B) and not nurse.may_see_ward(None)
    assert physician.visible_wards is None and physician.may_see_ward(WARD_B)
    assert not auth.DashboardUser("dana", "data_scientist", ()).may_open("patient")


def test_the_session_key_is_made_once_readable_by_its_owner_only(tmp_path):
    first = auth.secret_key(tmp_path)
    path = tmp_path / auth.SECRET_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.secret_key(tmp_path) == first and len(first) == 64
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        auth.secret_key(tmp_path)
