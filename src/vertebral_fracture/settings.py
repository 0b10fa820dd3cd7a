"""Project settings: Kedro defaults except where noted."""

import warnings

from kedro.config import OmegaConfigLoader

from vertebral_fracture.hooks import OPT_IN_PLUGINS, MlflowTracking, VariantHooks

# The model variants (namespaces <view>.<variant>) come from the parameters; MLflow tracking
# is on where the run's configuration holds an mlflow.yml (kedro run --env mlflow).
HOOKS = (VariantHooks(), MlflowTracking())
DISABLE_HOOKS_FOR_PLUGINS = OPT_IN_PLUGINS

# Two warnings no user can act on open every run: Kedro 1.7 calls an OmegaConf 2.4 deprecated
# API, and the reporting pipeline reads the per-view models by their namespaced (dotted) names.
warnings.filterwarnings("ignore", r"register_new_resolver\(\) is deprecated", UserWarning)
warnings.filterwarnings("ignore", r"One or more dataset names contain '\.'", UserWarning)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Deep-merge parameters across environments: conf/local or conf/bench can override one
    # nested value (e.g. axial.multitask.training.max_epochs) without restating the rest.
    "merge_strategy": {"parameters": "soft"},
}
