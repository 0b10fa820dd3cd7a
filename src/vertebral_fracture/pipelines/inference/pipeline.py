"""inference: probability volumes P_ax, P_co, P_sa per case and model variant."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from vertebral_fracture.pipelines.inference.nodes import predict_view
from vertebral_fracture.pipelines.views import bind, per_view_and_variant


def create_pipeline(**kwargs) -> Pipeline:
    return per_view_and_variant(
        lambda view, variant: Node(
            bind(predict_view, view=view),
            inputs=["slices", "model", "case_index", "params:training", "params:inference"],
            outputs="probabilities",
            name="predict_view",
        ),
        shared_inputs={"case_index"},
        parameters={"params:inference"},
    )
