"""data_processing: phantoms -> validated case index -> canonical volumes -> per-view slices,
and every case's vertebra label map."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from vertebral_fracture.pipelines.data_processing.nodes import (
    generate_phantoms,
    index_cases,
    preprocess_cases,
    slice_view,
    vertebra_maps,
)
from vertebral_fracture.pipelines.views import VIEWS, bind


def create_pipeline(**kwargs) -> Pipeline:
    view_nodes = [
        Pipeline(
            [
                Node(
                    bind(slice_view, view=view),
                    inputs=["canonical_scans", "case_index", "params:data_processing"],
                    outputs="slices",
                    name="slice_view",
                )
            ],
            namespace=view,
            inputs={"canonical_scans", "case_index"},
            parameters={"params:data_processing"},
        )
        for view in VIEWS
    ]
    return Pipeline(
        [
            Node(
                generate_phantoms,
                inputs="params:phantoms",
                outputs=["phantom_scans", "phantom_manifest", "phantom_preview"],
                name="generate_phantoms",
            ),
            Node(
                index_cases,
                inputs=[
                    "raw_scans",
                    "phantom_manifest",
                    "params:raw_dir",
                    "params:data_processing",
                ],
                outputs="case_index",
                name="index_cases",
            ),
            Node(
                preprocess_cases,
                inputs=["raw_scans", "case_index", "params:data_processing"],
                outputs="canonical_scans",
                name="preprocess_cases",
            ),
            Node(
                vertebra_maps,
                inputs=["raw_scans", "canonical_scans", "case_index"],
                outputs="vertebra_maps",
                name="vertebra_maps",
            ),
        ]
    ) + sum(view_nodes, Pipeline([]))
