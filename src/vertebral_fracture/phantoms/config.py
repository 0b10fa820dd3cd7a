"""Validated parameters of a synthetic spine CT phantom set."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

_AXIS_PAIRS = ({"L", "R"}, {"A", "P"}, {"S", "I"})


def validate_axcodes(code: str) -> str:
    """Return ``code`` upper-cased if it is a 3-letter orientation (one letter per axis pair).

    Raises ``ValueError`` for codes such as ``"RRS"`` or ``"XYZ"``.
    """
    code = code.upper()
    if len(code) != 3 or any(sum(c in pair for c in code) != 1 for pair in _AXIS_PAIRS):
        raise ValueError(f"orientation {code!r} must hold one of L/R, A/P and S/I, e.g. 'RAS'")
    return code


class PhantomSetParams(BaseModel):
    """Parameters of a phantom set.

    ``shape`` and ``spacing_mm`` are given in the canonical RAS (x, y, z) order. A case stored
    in another orientation (e.g. ``"PIR"``) has its array axes permuted/flipped accordingly, so
    ``ct.shape`` is a permutation of ``shape`` and ``header.get_zooms()`` the same permutation
    of ``spacing_mm``; ``nibabel.as_closest_canonical`` restores ``shape`` and ``spacing_mm``.
    """

    model_config = ConfigDict(extra="forbid")

    n_cases: int = Field(ge=1)
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    seed: int
    fracture_free_fraction: float = Field(default=0.25, ge=0.0, le=1.0)
    max_fractures: int = Field(default=3, ge=0, le=3)
    orientations: list[str] = Field(default_factory=lambda: ["RAS", "LPS", "PIR"], min_length=1)
    case_prefix: str = "phantom"

    @field_validator("shape")
    @classmethod
    def _shape_large_enough(cls, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(shape) < 24:
            raise ValueError(f"each shape dimension must be >= 24 voxels, got {shape}")
        return shape

    @field_validator("spacing_mm")
    @classmethod
    def _spacing_positive(cls, spacing: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(spacing) <= 0:
            raise ValueError(f"spacing must be > 0 mm, got {spacing}")
        return spacing

    @field_validator("orientations")
    @classmethod
    def _orientations_valid(cls, codes: list[str]) -> list[str]:
        return [validate_axcodes(c) for c in codes]
