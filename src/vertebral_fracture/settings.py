"""Project settings: Kedro defaults except where noted."""

from kedro.config import OmegaConfigLoader

from vertebral_fracture.hooks import OPT_IN_PLUGINS, MlflowTracking, VariantHooks

# The model variants (namespaces <view>.<variant>) come from the parameters; MLflow tracking
# is on where the run's configuration holds an mlflow.yml (kedro run --env mlflow).
HOOKS = (VariantHooks(), MlflowTracking())
DISABLE_HOOKS_FOR_PLUGINS = OPT_IN_PLUGINS

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Deep-merge parameters across environments: conf/local or conf/bench can override one
    # nested value (e.g. axial.multitask.training.max_epochs) without restating the rest.
    "merge_strategy": {"parameters": "soft"},
}
