"""reporting: metrics.json, tables, curves, 3D pictures and report.html in data/08_reporting;
DICOM SEG for cases read from a DICOM series."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from vertebral_fracture.pipelines.reporting.nodes import (
    dicom_segmentations,
    draw_attention,
    draw_cases,
    evaluate_methods,
    render_html_report,
    tabulate_findings,
)
from vertebral_fracture.pipelines.views import configured_variants


def create_pipeline(**kwargs) -> Pipeline:
    fused = [f"{variant}.fused" for variant in configured_variants()]
    return Pipeline(
        [
            Node(
                tabulate_findings,
                inputs=[
                    "raw_scans",
                    "vertebra_maps",
                    "case_index",
                    "lesion_candidate_rules",
                    "vertebra_thresholds",
                    "params:reporting",
                    *fused,
                ],
                outputs=["findings_table", "vertebra_table", "findings"],
                name="tabulate_findings",
            ),
            Node(
                dicom_segmentations,
                inputs=["fracture_label_maps", "findings", "case_index", "params:raw_dir"],
                outputs=["dicom_segmentations", "dicom_findings"],
                name="dicom_segmentations",
            ),
            Node(
                evaluate_methods,
                inputs=[
                    "raw_scans",
                    "vertebra_maps",
                    "case_index",
                    "fusion_thresholds",
                    "lesion_candidate_rules",
                    "findings",
                    "vertebra_thresholds",
                    *fused,
                ],
                outputs=[
                    "metrics",
                    "case_metrics",
                    "comparison_table",
                    "evaluation_plots",
                    "score_histograms",
                ],
                name="evaluate_methods",
            ),
            Node(
                draw_cases,
                inputs=[
                    "raw_scans",
                    "vertebra_maps",
                    "case_index",
                    "fusion_thresholds",
                    "findings",
                    "params:reporting",
                    *fused,
                ],
                outputs=["case_figures", "case_views"],
                name="draw_cases",
            ),
            Node(
                draw_attention,
                inputs=["axial.multitask.model", "axial.slices", "case_index", "params:reporting"],
                outputs="attention_figures",
                name="draw_attention",
            ),
            Node(
                render_html_report,
                inputs=[
                    "metrics",
                    "findings",
                    "case_index",
                    "case_metrics",
                    "comparison_table",
                    "evaluation_plots",
                    "case_figures",
                    "attention_figures",
                    "case_views",
                    "params:reporting",
                ],
                outputs="report",
                name="render_html_report",
            ),
        ]
    )
