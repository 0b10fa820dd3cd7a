"""evaluate: score the trained models on any folder of scans, every case a test case.

    kedro run --pipeline evaluate --params raw_dir=/path/to/scans,output_root=data/evaluation

Reuses the checkpoints and validation thresholds already in the catalog; runs
preprocessing, slicing, inference, fusion and reporting, without phantoms or training. Its
case index, volumes and reports go under ``output_root`` (default: the environment's data
root, whose own outputs they then replace).
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from vertebral_fracture.pipelines import data_processing, fusion, inference, reporting
from vertebral_fracture.pipelines.data_processing.nodes import index_evaluation_cases


def create_pipeline(**kwargs) -> Pipeline:
    index = Node(
        index_evaluation_cases,
        inputs=["raw_scans", "params:raw_dir", "params:data_processing"],
        outputs="case_index",
        name="index_evaluation_cases",
    )
    selections = {"select_thresholds", "select_candidate_rules", "select_vertebra_thresholds"}
    fuse_with_stored_thresholds = Pipeline(
        [n for n in fusion.create_pipeline().nodes if n.name not in selections]
    )
    return (
        Pipeline([index])
        + data_processing.create_pipeline().from_nodes("preprocess_cases")
        + inference.create_pipeline()
        + fuse_with_stored_thresholds
        + reporting.create_pipeline()
    )
