"""Project hooks: tracking stays out of the way where it is not configured."""

from __future__ import annotations

import sys

import pandas as pd

from vertebral_fracture.hooks import MlflowTracking


def test_untracked_runs_need_no_mlflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` fails, as without the extra
    hooks = MlflowTracking()
    hooks.before_node_run(inputs={"params:x": 1})
    history = pd.DataFrame({"epoch": [1], "train_loss": [0.5]})
    hooks.after_node_run(catalog=None, outputs={"axial.multitask.training_history": history})
