"""Project hooks."""

from __future__ import annotations

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines

from vertebral_fracture.pipelines.views import configure_variants, variants_of


class VariantHooks:
    """Builds the pipelines for the model variants named in the run's parameters.

    Runs when the context exists and before Kedro first reads the pipelines. It reads the
    raw parameters (``context.params`` would validate them against the pipelines, which are
    not built yet) and, when the variants differ from those the pipelines were built for
    (another environment in the same process), has Kedro build them again.
    """

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        if configure_variants(variants_of(context.config_loader["parameters"])):
            pipelines.configure(f"{__package__}.pipeline_registry")
