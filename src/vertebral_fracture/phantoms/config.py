"""Validated parameters of a synthetic spine CT phantom set."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .anatomy import LEVELS

_AXIS_PAIRS = ({"L", "R"}, {"A", "P"}, {"S", "I"})


def validate_axcodes(code: str) -> str:
    """Return ``code`` upper-cased if it is a 3-letter orientation (one letter per axis pair).

    Raises ``ValueError`` for codes such as ``"RRS"`` or ``"XYZ"``.
    """
    code = code.upper()
    if len(code) != 3 or any(sum(c in pair for c in code) != 1 for pair in _AXIS_PAIRS):
        raise ValueError(f"orientation {code!r} must hold one of L/R, A/P and S/I, e.g. 'RAS'")
    return code


Range = tuple[float, float]


def _ordered(bounds: Range) -> Range:
    if bounds[0] > bounds[1]:
        raise ValueError(f"range {bounds} must be given low first")
    return bounds


class PhantomAppearance(BaseModel):
    """Ranges every case draws its anatomy and image formation from (uniform within each).

    Wide ranges are domain randomisation: a model trained across them should learn what a
    fracture is rather than how one generator draws bone (after SynthSeg, Billot et al.,
    Medical Image Analysis 2023). A test set drawn from ranges held out of training measures
    transfer (``conf/bench``: ``phantoms_out_of_domain``).
    """

    model_config = ConfigDict(extra="forbid")

    levels: tuple[str, str] = ("T9", "L5")  # the field is centred on, and fractures hit, these
    size_scale: Range = (0.85, 1.15)  # patient size x adult dimensions, whatever the field
    trabecular_hu: Range = (50.0, 320.0)  # osteoporotic (anatomy.OSTEOPOROTIC_HU) to sclerotic
    cortical_hu: Range = (450.0, 1100.0)
    in_plane_blur_mm: Range = (0.35, 0.9)  # point-spread sigma: soft to sharp kernels
    slice_thickness_mm: Range = (0.6, 3.0)  # slice profile FWHM along z (partial volume)
    sharpen: Range = (0.0, 0.8)  # unsharp-mask gain of edge-enhancing kernels
    noise_hu: Range = (5.0, 30.0)  # standard deviation of the correlated noise
    noise_grain_mm: Range = (0.4, 1.0)  # noise correlation length
    # intact endplates, per vertebra: subchondral bone denser than the marrow by a peak HU
    # that fades over a depth (mm), from barely to degenerative sclerosis as bright as a
    # compacted fracture band, so brightness under an endplate is no sign of a fracture
    endplate_sclerosis_hu: Range = (40.0, 350.0)
    endplate_sclerosis_mm: Range = (1.0, 4.0)
    # how fractures look, per fracture: compacted bone under a collapsed endplate (HU above
    # the marrow; from 0, only the endplate's shape shows the collapse) and the blood filling
    # fracture gaps
    compaction_hu: Range = (0.0, 350.0)
    fracture_gap_hu: Range = (30.0, 80.0)
    # the voxel grid, drawn per case where given (resolution randomisation, as SynthSeg's):
    # in-plane (x, y) and slice (z) spacing over the set's field of view; None keeps the
    # set's ``spacing_mm``
    in_plane_spacing_mm: Range | None = None
    slice_spacing_mm: Range | None = None

    @field_validator("trabecular_hu", "cortical_hu", "compaction_hu", "fracture_gap_hu")
    @classmethod
    def _low_first(cls, bounds: Range) -> Range:
        return _ordered(bounds)

    @field_validator(
        "size_scale",
        "in_plane_blur_mm",
        "slice_thickness_mm",
        "sharpen",
        "noise_hu",
        "noise_grain_mm",
        "endplate_sclerosis_hu",
        "endplate_sclerosis_mm",
    )
    @classmethod
    def _non_negative(cls, bounds: Range, info: ValidationInfo) -> Range:
        # sizes and grains scale or divide anatomy and filters: they must stay above zero
        positive = info.field_name in (
            "size_scale",
            "noise_grain_mm",
            "slice_thickness_mm",
            "endplate_sclerosis_mm",
        )
        if min(bounds) < 0 or (positive and min(bounds) <= 0):
            sign = "> 0" if positive else ">= 0"
            raise ValueError(f"{info.field_name} {bounds} must be {sign}")
        return _ordered(bounds)

    @field_validator("in_plane_spacing_mm", "slice_spacing_mm")
    @classmethod
    def _spacing_range_positive(cls, bounds: Range | None, info: ValidationInfo) -> Range | None:
        if bounds is not None and min(bounds) <= 0:
            raise ValueError(f"{info.field_name} {bounds} must be > 0 mm")
        return bounds if bounds is None else _ordered(bounds)

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, levels: tuple[str, str]) -> tuple[str, str]:
        unknown = [lv for lv in levels if lv not in LEVELS]
        if unknown:
            raise ValueError(f"unknown levels {unknown}; choose from {LEVELS[0]}..{LEVELS[-1]}")
        if LEVELS.index(levels[0]) > LEVELS.index(levels[1]):
            raise ValueError(f"levels {levels} must be given cranial first, e.g. ['T9', 'L5']")
        return levels


# what training-only cases share with their set: case ids and seeds continue it, and twins
# are drawn alike
TRAINING_ONLY_FIXED = frozenset({"seed", "case_prefix", "intact_twins", "training_only"})


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
    # each fractured case also drawn without its fractures (``generate_phantom_set``): pairs
    # that differ only in the fracture, for training (``TrainingParams.twin_negative_fraction``)
    intact_twins: bool = False
    appearance: PhantomAppearance = Field(default_factory=PhantomAppearance)
    # more cases that only ever train, drawn after the ``n_cases`` (seeds continue), group by
    # group, from these parameters with the given ones replaced, ``appearance`` range by
    # range, e.g. ``[{n_cases: 96, spacing_mm: [0.75, 0.75, 2.5]}, {n_cases: 32, appearance:
    # {levels: [T1, T4]}}]`` (one group may be given alone): wider training data while
    # validation and test stay what the ``n_cases`` split into
    training_only: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("training_only", mode="before")
    @classmethod
    def _one_group_or_several(cls, groups: Any) -> Any:
        if isinstance(groups, dict):
            return [groups] if groups else []
        return groups

    @model_validator(mode="after")
    def _training_only_valid(self) -> PhantomSetParams:
        for group in self.training_only:
            fixed = sorted(group.keys() & TRAINING_ONLY_FIXED)
            if fixed:
                raise ValueError(f"training_only cases share the set's {fixed}; remove them there")
            if "n_cases" not in group:
                raise ValueError("each training_only group needs n_cases, its number of cases")
        self.training_only_groups()  # unknown names and bad ranges fail here, not mid-run
        return self

    @model_validator(mode="after")
    def _drawn_grids_large_enough(self) -> PhantomSetParams:
        coarsest = self.grid_shape(self.spacing_range()[1])
        if min(coarsest) < 24:
            raise ValueError(
                f"the coarsest drawn grid, {coarsest} voxels, must be >= 24 in each dimension"
            )
        return self

    def spacing_range(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Finest and coarsest (x, y, z) spacing (mm) a case may draw."""
        ranges = [
            self.appearance.in_plane_spacing_mm or (self.spacing_mm[0],) * 2,
            self.appearance.in_plane_spacing_mm or (self.spacing_mm[1],) * 2,
            self.appearance.slice_spacing_mm or (self.spacing_mm[2],) * 2,
        ]
        return tuple(lo for lo, _ in ranges), tuple(hi for _, hi in ranges)

    def grid_shape(self, spacing: tuple[float, float, float]) -> tuple[int, int, int]:
        """Voxels of a grid of ``spacing`` (mm) over the set's field of view: ``shape`` for
        ``spacing_mm``, as many as keep the field, (shape - 1) x spacing_mm, for others."""
        fields = [(n - 1) * s for n, s in zip(self.shape, self.spacing_mm, strict=True)]
        return tuple(round(f / s) + 1 for f, s in zip(fields, spacing, strict=True))

    def training_only_groups(self) -> list[PhantomSetParams]:
        """Each group of training-only cases' parameters (its ``n_cases`` cases), in order."""
        own = self.model_dump(exclude={"training_only"})
        return [
            PhantomSetParams(
                **{
                    **own,
                    **group,
                    "appearance": {**own["appearance"], **group.get("appearance", {})},
                }
            )
            for group in self.training_only
        ]

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
