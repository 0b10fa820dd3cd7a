"""Bad settings fail before any work, naming the parameter."""

from __future__ import annotations

import pytest

from tests.kedro_project import make_tiny_project, run_pipeline


@pytest.mark.parametrize(
    ("pipeline", "override", "message"),
    [
        ("data_processing", {"data_processing": {"min_slice_size": 100}}, "min_slice_size"),
        ("data_processing", {"phantoms": {"spacing_mm": [1.0, -1.0, 1.0]}}, "spacing"),
        ("training", {"axial": {"multitask": {"training": {"seg_weight": -0.1}}}}, "seg_weight"),
        ("training", {"axial": {"multitask": {"training": {"slice_size": 100}}}}, "slice_size"),
        ("fusion", {"fusion": {"views": ["axial", "oblique"]}}, "oblique"),
        ("fusion", {"fusion": {"methods": {"multitask": ["median"]}}}, "median"),
    ],
)
def test_bad_parameter_fails_at_start_with_its_name(tmp_path, pipeline, override, message):
    project = make_tiny_project(tmp_path, override)
    with pytest.raises(Exception, match=message):
        run_pipeline(project, pipeline)
    produced = [p for p in (project / "data").rglob("*") if p.is_file()]
    assert produced == []  # nothing ran
