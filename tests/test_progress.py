"""Progress shows a bar on a terminal and writes plain log lines elsewhere."""

from __future__ import annotations

import logging

import pytest

from vertebral_fracture import progress
from vertebral_fracture.progress import Progress


def test_off_a_terminal_progress_is_a_few_log_lines(caplog, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 1e9)  # only the closing line
    caplog.set_level(logging.INFO, logger="vertebral_fracture.progress")
    bar = Progress(range(500), desc="epoch 1/2", unit="step", terminal=False)
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(loss="0.1234")
    assert seen == list(range(500))
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["epoch 1/2: 500/500 step"]
    assert "loss 0.1234" in caplog.records[0].getMessage()
    assert "\r" not in capsys.readouterr().err  # no bar redraws in a log file


def test_log_lines_come_every_few_seconds(caplog, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="vertebral_fracture.progress")
    list(Progress(iter(range(3)), desc="phantoms", unit="case", terminal=False))
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "phantoms: 1 case",
        "phantoms: 2 case",
        "phantoms: 3 case",
        "phantoms: 3 case",
    ]


@pytest.mark.parametrize("terminal", [True, False])
def test_disabled_progress_shows_nothing(terminal, caplog, capsys):
    caplog.set_level(logging.INFO, logger="vertebral_fracture.progress")
    assert list(Progress(range(4), desc="x", enabled=False, terminal=terminal)) == [0, 1, 2, 3]
    assert not caplog.records and not capsys.readouterr().err
