"""Typed parameters of the data_processing pipeline (validated by Kedro before the run)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator

from vertebral_fracture.slicing import STRIDE


class SplitParams(BaseModel):
    """Fractions of labelled cases per split; inference-only cases always go to test."""

    model_config = ConfigDict(extra="forbid")
    train: float = Field(0.6, ge=0.0, le=1.0)
    val: float = Field(0.2, ge=0.0, le=1.0)
    test: float = Field(0.2, ge=0.0, le=1.0)
    seed: int = 0


class DataProcessingParams(BaseModel):
    """Preprocessing of scans into canonical volumes and 2D slices."""

    model_config = ConfigDict(extra="forbid")
    spacing_mm: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = (1.0, 1.0, 1.0)
    window_level: float = 400.0
    window_width: PositiveFloat = 1800.0
    min_slice_size: int = Field(64, ge=STRIDE)
    binarize_masks: bool = False
    # id convention of users' <case>_vertebrae.nii.gz maps (the phantoms' are TotalSegmentator's)
    vertebra_labels: Literal["totalsegmentator", "verse"] = "totalsegmentator"
    split: SplitParams = SplitParams()

    @field_validator("min_slice_size")
    @classmethod
    def _multiple_of_stride(cls, value: int) -> int:
        if value % STRIDE:
            raise ValueError(
                f"min_slice_size must be a multiple of {STRIDE} (the encoders' stride), got {value}"
            )
        return value
