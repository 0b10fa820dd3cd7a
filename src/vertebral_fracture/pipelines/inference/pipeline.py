"""inference: probability volumes P_ax, P_co, P_sa per case and model variant."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from vertebral_fracture.pipelines.inference.nodes import predict_view
from vertebral_fracture.pipelines.views import VARIANTS, VIEWS, bind


def create_pipeline(**kwargs) -> Pipeline:
    return sum(
        (
            Pipeline(
                [
                    Node(
                        bind(predict_view, view=view),
                        inputs=[
                            "slices",
                            "model",
                            "case_index",
                            "params:training",
                            "params:inference",
                        ],
                        outputs="probabilities",
                        name="predict_view",
                    )
                ],
                namespace=f"{view}.{variant}",
                inputs={"slices": f"{view}.slices", "case_index": "case_index"},
                parameters={"params:inference"},
            )
            for view in VIEWS
            for variant in VARIANTS
        ),
        Pipeline([]),
    )
