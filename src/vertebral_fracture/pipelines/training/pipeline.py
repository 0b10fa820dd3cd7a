"""training: one slice model per view and variant, namespaces "<view>.<variant>"."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from vertebral_fracture.pipelines.training.nodes import train_view_model
from vertebral_fracture.pipelines.views import bind, per_view_and_variant


def create_pipeline(**kwargs) -> Pipeline:
    return per_view_and_variant(
        lambda view, variant: Node(
            bind(train_view_model, view=view, variant=variant),
            inputs=["slices", "case_index", "params:training", "params:checkpoint_dir"],
            outputs=["model", "training_history", "training_curves"],
            name="train_view_model",
        ),
        shared_inputs={"case_index"},
        parameters={"params:checkpoint_dir"},
    )
