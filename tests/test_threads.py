"""``--threads``: the setting's values, the idle cores read from /proc/stat, and the count a run gets."""

import os
import time
from pathlib import Path

import pytest

from convlab import threads
from convlab.errors import ConvlabError
from convlab.threads import idle_cores, parse_threads, resolve_threads

# /proc/stat's first line: "cpu" and the ticks spent user, nice, system, idle, iowait, irq, softirq, steal.
BEFORE = "cpu  100 0 20 300 10 0 0 0\ncpu0 50 0 10 150 5 0 0 0\ncpu1 50 0 10 150 5 0 0 0\n"
AFTER = "cpu  150 0 30 350 20 0 0 0\ncpu0 75 0 15 175 10 0 0 0\ncpu1 75 0 15 175 10 0 0 0\n"


def test_a_setting_is_a_positive_count_auto_or_none():
    assert parse_threads("2") == 2 and parse_threads(3) == 3  # YAML and flags give text or numbers
    assert parse_threads("auto") == "auto" and parse_threads(None) is None
    for bad in ("0", "two", -1, 1.5, True):
        with pytest.raises(ConvlabError, match="threads must be a positive integer or 'auto'"):
            parse_threads(bad)


def test_idle_cores_are_the_idle_share_of_the_ticks_between_two_samples(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text(BEFORE)
    monkeypatch.setattr(time, "sleep", lambda seconds: stat.write_text(AFTER))  # the ticks of the interval
    # idle + iowait grew by 60 of 120 ticks, on 2 cores: one core's worth was left idle
    assert idle_cores(stat=stat) == pytest.approx(1.0)


def test_idle_cores_are_unknown_where_proc_stat_cannot_tell(tmp_path):
    assert idle_cores(interval=0, stat=tmp_path / "missing") is None  # not Linux
    stat = tmp_path / "stat"
    stat.write_text(BEFORE)
    assert idle_cores(interval=0, stat=stat) is None  # no tick counted in between


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads Linux's /proc/stat")
def test_idle_cores_on_this_machine_lie_between_none_and_all():
    idle = idle_cores(interval=0.05)
    assert idle is not None and 0 <= idle <= os.cpu_count()


@pytest.mark.parametrize("idle, expected", [(2.6, 3), (2.4, 2), (0.2, 1), (11.7, 8)])
def test_auto_takes_the_idle_cores_rounded_never_fewer_than_1_nor_more_than_the_process_has(
    monkeypatch, idle, expected
):
    monkeypatch.setattr(threads, "idle_cores", lambda: idle)
    assert resolve_threads("auto", available=8) == expected


def test_auto_keeps_the_process_setting_when_the_idle_cores_are_unknown_or_it_has_one(monkeypatch):
    monkeypatch.setattr(threads, "idle_cores", lambda: None)
    assert resolve_threads("auto", available=4) == 4
    monkeypatch.setattr(threads, "idle_cores", lambda: pytest.fail("one thread has nothing to lower"))
    assert resolve_threads("auto", available=1) == 1


def test_none_keeps_the_process_setting_and_a_number_is_taken_as_given():
    assert resolve_threads(None, available=4) == 4
    assert resolve_threads(3, available=1) == 3
