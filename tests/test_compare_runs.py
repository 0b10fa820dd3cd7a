import pytest

from tests.conftest import benchmark_script

compare_runs = benchmark_script("compare_runs")


def _run(pr_auc: list[float], cases: list[str] | None = None) -> dict:
    figures = {"pr_auc": {"per_seed": pr_auc}}
    return {
        "seeds": [1, 2, 3],
        "test_cases": cases or ["a", "b"],
        "methods": {compare_runs.METHOD: figures},
    }


def test_a_difference_is_claimed_only_where_its_interval_excludes_zero():
    control = _run([0.50, 0.55, 0.52])
    (gain,) = compare_runs.compare(control, _run([0.60, 0.66, 0.61]))
    assert gain["verdict"] == "higher" and gain["mean"] == pytest.approx(0.1, abs=1e-9)
    assert 0 < gain["ci95"][0] < gain["mean"] < gain["ci95"][1]
    (noise,) = compare_runs.compare(control, _run([0.60, 0.45, 0.56]))
    assert noise["verdict"] == "a tie" and noise["ci95"][0] < 0 < noise["ci95"][1]


def test_runs_that_scored_other_cases_do_not_pair():
    with pytest.raises(ValueError, match="other test cases"):
        compare_runs.compare(_run([0.5, 0.5, 0.5]), _run([0.5, 0.5, 0.5], cases=["a", "c"]))


def test_a_set_only_one_run_scored_is_left_out():
    control, probe = _run([0.50, 0.55, 0.52]), _run([0.60, 0.66, 0.61])
    probe["development"] = _run([0.20, 0.25, 0.22])  # a set the control run did not score
    assert [row["test_set"] for row in compare_runs.compare(control, probe)] == ["in-domain"]
    control["development"] = _run([0.10, 0.15, 0.12])
    rows = compare_runs.compare(control, probe)
    assert [row["test_set"] for row in rows] == ["in-domain", "development"]
    assert rows[1]["mean"] == pytest.approx(0.1)
