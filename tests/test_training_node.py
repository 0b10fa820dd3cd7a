"""The training node guards where it writes."""

from __future__ import annotations

import pytest

from vertebral_fracture.pipelines.training.nodes import output_folder


@pytest.mark.parametrize("path", ["../outside", "data/../../escape", "conf"])
def test_relative_output_paths_must_stay_in_data(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="outside the project's data/ folder"):
        output_folder(path)


def test_inside_data_and_explicit_absolute_paths_are_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert output_folder("data/06_models").as_posix() == "data/06_models"
    assert output_folder(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
