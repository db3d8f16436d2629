"""XGBoost's external-memory pages: each fit's own folder, gone when the fit ends, and what
a killed fit left behind is removed by the next one (tens of GiB at hospital scale)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from riskcast.errors import ModelError
from riskcast.model import RiskModel
from riskcast.model.page_cache import PAGE_CACHE_PREFIX, page_cache, remove_orphaned_page_caches


def _ended_pid() -> int:
    """The id of a process that has run and ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _left_behind(folder, pid: int):
    path = folder / f"{PAGE_CACHE_PREFIX}{pid}-abcd1234"
    path.mkdir()
    (path / "xgb-cache.gradient_index.page").write_bytes(b"\0" * 1024)
    return path


def test_folders_of_ended_processes_are_removed_and_running_ones_kept(tmp_path):
    orphan = _left_behind(tmp_path, _ended_pid())
    running = _left_behind(tmp_path, os.getppid())  # the process that started this test
    unrelated = tmp_path / "riskcast-xgb-notapid"
    unrelated.mkdir()
    assert remove_orphaned_page_caches(tmp_path) == [orphan]
    assert not orphan.exists() and running.exists() and unrelated.exists()


def test_a_page_folder_is_named_for_its_process_and_goes_with_its_cleanup(tmp_path):
    orphan = _left_behind(tmp_path, _ended_pid())
    scratch = page_cache(str(tmp_path))
    folder = tmp_path / os.path.basename(scratch.name)
    assert folder.name.startswith(f"{PAGE_CACHE_PREFIX}{os.getpid()}-") and folder.is_dir()
    assert not orphan.exists()
    scratch.cleanup()
    assert not folder.exists()


def test_a_cache_folder_that_cannot_hold_pages_is_a_model_error_naming_it(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(ModelError, match="cannot make a folder for XGBoost's pages under .*a-file"):
        page_cache(str(blocked))


def test_a_paged_fit_pages_into_its_own_folder_and_leaves_nothing(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4)).astype(np.float32)
    y = (X[:, 0] + rng.normal(size=3000) > 1.5).astype(int)
    groups = np.repeat(np.arange(300), 10)
    orphan = _left_behind(tmp_path, _ended_pid())
    model = RiskModel(device="cpu", n_jobs=1, n_estimators=20, threshold_rule="none", external_memory=True,
                      cache_dir=str(tmp_path))
    model.fit(X, y, groups=groups)
    assert model.training_metrics_["external_memory"] is True
    assert not orphan.exists()
    assert list(tmp_path.iterdir()) == []
