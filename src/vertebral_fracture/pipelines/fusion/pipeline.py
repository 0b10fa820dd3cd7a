"""fusion: P_voxel from the three views per variant and method; thresholds; label maps."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from vertebral_fracture.pipelines.fusion.nodes import (
    fuse_views,
    label_maps,
    select_candidate_rules,
    select_thresholds,
    select_vertebra_thresholds,
)
from vertebral_fracture.pipelines.views import VIEWS, bind, configured_variants


def create_pipeline(**kwargs) -> Pipeline:
    variants = configured_variants()
    fused = [f"{variant}.fused" for variant in variants]
    fuse_nodes = [
        Node(
            bind(fuse_views, variant=variant),
            inputs=[f"{view}.{variant}.probabilities" for view in VIEWS] + ["params:fusion"],
            outputs=f"{variant}.fused",
            name="fuse_views",
            namespace=variant,
        )
        for variant in variants
    ]
    return Pipeline(
        [
            *fuse_nodes,
            Node(
                select_thresholds,
                inputs=["raw_scans", "case_index", *fused],
                outputs="fusion_thresholds",
                name="select_thresholds",
            ),
            Node(
                select_candidate_rules,
                inputs=["raw_scans", "vertebra_maps", "case_index", "fusion_thresholds", *fused],
                outputs="lesion_candidate_rules",
                name="select_candidate_rules",
            ),
            Node(
                select_vertebra_thresholds,
                inputs=["raw_scans", "vertebra_maps", "case_index", "fusion_thresholds", *fused],
                outputs="vertebra_thresholds",
                name="select_vertebra_thresholds",
            ),
            Node(
                label_maps,
                inputs=["fusion_thresholds", "case_index", *fused],
                outputs="fracture_label_maps",
                name="label_maps",
            ),
        ]
    )
