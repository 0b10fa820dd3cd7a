"""Shared fixtures: small synthetic volumes in several orientation conventions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest

REAL_CT = Path(__file__).parent / "data" / "real_ct" / "lumbar_ct.nii.gz"
REAL_CT_VERTEBRAE = REAL_CT.with_name("lumbar_ct_vertebrae.nii.gz")
REAL_SERIES = REAL_CT.with_name("lumbar_ct_dicom")
PATIENT_NAME = "Qxzvandermeer^Jolanthe"  # in series copies: must never reach a log or report
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_script(name: str) -> ModuleType:
    """A script of benchmarks/ (not a package) imported as a module, for its functions."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_series_as_archived(folder: Path) -> Path:
    """A copy of the real DICOM series as a PACS holds it: the test data's blanked study and
    series UIDs filled in, and a patient name. The original files stay untouched."""
    import pydicom  # only the DICOM tests need it

    folder.mkdir(parents=True)
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for path in sorted(REAL_SERIES.iterdir()):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.PatientName = PATIENT_NAME
        ds.save_as(folder / path.name)
    return folder


def centre_spine(shape: tuple[int, ...]) -> np.ndarray:
    """(Z, 2) spine centre line straight through the middle of an (X, Y, Z) volume, for tests
    where the spine's position does not matter."""
    return np.tile(np.array([(shape[0] - 1) / 2, (shape[1] - 1) / 2], np.float32), (shape[2], 1))


def weak_and_strong_fractures(
    shape: tuple[int, int, int] = (30, 30, 30),
) -> tuple[np.ndarray, np.ndarray]:
    """Fused scores of two fractures spanning decades, as product fusion gives them, and their
    mask: a weak one (peak 1e-2, the rest of it at 2e-4) and a strong one (peak 0.5, the rest
    at 0.02) whose surroundings score 2e-4 as the weak fracture's body does. No single
    threshold finds both with IoU > 0.2: 1e-3 cuts the weak one to its peak, 1e-4 merges the
    strong one with its 8 times larger halo."""
    prob = np.zeros(shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=bool)
    mask[2:6, 2:6, 2:6] = True
    prob[2:6, 2:6, 2:6] = 2e-4
    prob[3, 3, 3] = 1e-2
    mask[15:19, 15:19, 15:19] = True
    prob[13:21, 13:21, 13:21] = 2e-4
    prob[15:19, 15:19, 15:19] = 0.02
    prob[16, 16, 16] = 0.5
    return prob, mask


def make_image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image


def reorient(image: nib.Nifti1Image, axcodes: str) -> nib.Nifti1Image:
    """The same anatomy stored with another axis convention (e.g. 'LPS', 'PIR')."""
    start = nib.orientations.io_orientation(image.affine)
    end = nib.orientations.axcodes2ornt(tuple(axcodes))
    transform = nib.orientations.ornt_transform(start, end)
    data = nib.orientations.apply_orientation(np.asanyarray(image.dataobj), transform)
    affine = image.affine @ nib.orientations.inv_ornt_aff(transform, image.shape)
    return make_image(data, affine)


@pytest.fixture
def spine_like_ct() -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """A 40x36x30 RAS volume, anisotropic: soft tissue, a bone column, a small 'fracture'."""
    rng = np.random.default_rng(0)
    shape = (40, 36, 30)
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    hu = np.full(shape, -1000.0)
    body = ((x - 20) / 18) ** 2 + ((y - 18) / 16) ** 2 <= 1
    hu[body] = 40
    bone = ((x - 20) / 6) ** 2 + ((y - 20) / 5) ** 2 <= 1
    hu[bone] = 250
    hu += rng.normal(0, 5, shape)
    mask = np.zeros(shape, np.uint8)
    mask[18:23, 18:22, 12:16] = 1
    affine = np.diag([0.8, 0.9, 1.6, 1.0])
    affine[:3, 3] = [-16.0, -20.0, 5.0]
    return make_image(hu.astype(np.int16), affine), make_image(mask, affine)
