"""rtlgen's disk cache keeps each kind's folder within its size limit, least recently used first."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from rtlgen import cache
from rtlgen.errors import RtlgenError
from rtlgen.flows import batch_sim

HOUR = cache.FRESH_S


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("RTLGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RTLGEN_CACHE_MIB", raising=False)
    return tmp_path / "cache"


def _entry(folder, name: str, size: int, age_s: float, now: float, is_dir: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if is_dir:
        path.mkdir()
        (path / "sub").mkdir()
        (path / "sub" / "blob").write_bytes(b"x" * size)
    else:
        path.write_bytes(b"x" * size)
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_least_recently_used_entries_go_first_until_the_folder_fits(root):
    now = time.time()
    folder = root / "batch"
    old = _entry(folder, "a", 400, 5 * HOUR, now, is_dir=True)      # 400 bytes in a nested file
    mid = _entry(folder, "b", 300, 4 * HOUR, now)
    new = _entry(folder, "c", 200, 3 * HOUR, now, is_dir=True)
    # 900 bytes against a limit of 600: the oldest goes, and 500 fit
    assert cache.prune("batch", limit=600, now=now) == [old]
    assert not old.exists() and mid.exists() and new.exists()
    # a limit of 250: b goes; c is the newest entry, which always stays
    assert cache.prune("batch", limit=250, now=now) == [mid]
    assert cache.prune("batch", limit=0, now=now) == [] and new.exists()


def test_entries_used_in_the_last_hour_stay_over_the_limit(root):
    now = time.time()
    folder = root / "adder-graphs"
    stale = _entry(folder, "a.pickle", 100, 2 * HOUR, now)
    fresh = [_entry(folder, f"{k}.pickle", 100, HOUR / 2 - k, now) for k in range(3)]
    assert cache.prune("adder-graphs", limit=0, now=now) == [stale]
    assert all(p.exists() for p in fresh)


def test_leftovers_of_stopped_builds_go_after_a_day(root):
    now = time.time()
    folder = root / "batch"
    day_old = _entry(folder, ".top-abc", 10, cache.STALE_TEMP_S + 60, now, is_dir=True)
    recent = _entry(folder, ".key-def", 10, cache.STALE_TEMP_S - 60, now)
    kept = _entry(folder, "top-0123", 10, 3 * HOUR, now, is_dir=True)
    assert cache.prune("batch", now=now) == [day_old]
    assert recent.exists() and kept.exists()


def test_a_graph_read_from_the_cache_is_marked_used(root):
    cache.store("adder-graphs", "first", [1, 2, 3])
    cache.store("adder-graphs", "second", [4])
    folder = root / "adder-graphs"
    now = time.time()
    for name, age in (("first", 3 * HOUR), ("second", 2 * HOUR)):
        os.utime(folder / f"{name}.pickle", (now - age, now - age))
    assert cache.load("adder-graphs", "first") == [1, 2, 3]     # now the most recently used
    removed = cache.prune("adder-graphs", limit=1, now=now + 2 * HOUR)
    assert removed == [folder / "second.pickle"] and (folder / "first.pickle").exists()


def test_storing_a_graph_keeps_the_folder_within_the_limit(root, monkeypatch):
    folder = root / "adder-graphs"
    now = time.time()
    old = _entry(folder, "old.pickle", 5000, 2 * HOUR, now)
    monkeypatch.setenv("RTLGEN_CACHE_MIB", "0")
    cache.store("adder-graphs", "new", list(range(10)))
    assert not old.exists() and cache.load("adder-graphs", "new") == list(range(10))


def test_a_compiled_testbench_is_marked_used_and_a_new_one_prunes(root, monkeypatch):
    builds = []

    def build(work):
        builds.append(work)
        (work / "Vsim").write_bytes(b"\0" * 64)

    key = hashlib.sha256(b"core a")
    exe = batch_sim._cached(key, "top", "Vsim", build)
    assert exe.is_file() and len(builds) == 1
    now = time.time()
    os.utime(exe.parent, (now - 3 * HOUR, now - 3 * HOUR))
    assert batch_sim._cached(key, "top", "Vsim", build) == exe and len(builds) == 1   # a hit
    assert exe.parent.stat().st_mtime > now - 60                                     # marked used
    # an entry unused for two hours goes when a new one is built past the limit; the one used stays
    os.utime(exe.parent, (now - 2 * HOUR, now - 2 * HOUR))
    monkeypatch.setenv("RTLGEN_CACHE_MIB", "0")
    other = batch_sim._cached(hashlib.sha256(b"core b"), "top", "Vsim", build)
    assert len(builds) == 2 and other.is_file() and not exe.exists()


def test_the_size_limit_comes_from_the_environment(root, monkeypatch):
    assert cache.limit_bytes("batch") == cache.LIMIT_MIB["batch"] << 20
    assert cache.limit_bytes("adder-graphs") == cache.LIMIT_MIB["adder-graphs"] << 20
    monkeypatch.setenv("RTLGEN_CACHE_MIB", " 12 ")
    assert cache.limit_bytes("batch") == 12 << 20 and cache.limit_bytes("adder-graphs") == 12 << 20
    for bad in ("-1", "1.5", "lots"):
        monkeypatch.setenv("RTLGEN_CACHE_MIB", bad)
        with pytest.raises(RtlgenError, match="RTLGEN_CACHE_MIB must be a whole number of MiB"):
            cache.limit_bytes("batch")
