"""Progress shows a bar on a terminal and writes plain log lines elsewhere."""

from __future__ import annotations

import logging

import pytest

from vertebral_fracture import progress
from vertebral_fracture.progress import Progress


def test_off_a_terminal_a_short_loop_logs_nothing(caplog, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 1e9)
    caplog.set_level(logging.INFO, logger="vertebral_fracture.progress")
    assert list(Progress(range(500), desc="epoch 1/2", terminal=False)) == list(range(500))
    assert not caplog.records
    assert "\r" not in capsys.readouterr().err  # no bar redraws in a log file


def test_log_lines_come_every_few_seconds(caplog, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="vertebral_fracture.progress")
    bar = Progress(iter(range(3)), desc="epoch 1/2", unit="step", total=3, terminal=False)
    for _ in bar:
        bar.set_postfix(loss="0.1234")
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "epoch 1/2: 1/3 step",
        "epoch 1/2: 2/3 step",
        "epoch 1/2: 3/3 step",
        "epoch 1/2: 3/3 step",  # and the closing line
    ]
    assert "loss 0.1234" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("terminal", [True, False])
def test_disabled_progress_shows_nothing(terminal, caplog, capsys):
    caplog.set_level(logging.INFO, logger="vertebral_fracture.progress")
    assert list(Progress(range(4), desc="x", enabled=False, terminal=terminal)) == [0, 1, 2, 3]
    assert not caplog.records and not capsys.readouterr().err
