"""Off-the-shelf peer for the benchmark: a segmentation_models_pytorch U-Net (``[bench]`` extra)."""

from vertebral_fracture.models.peer.model import SMP_INSTALL_HINT, SmpUnetPeer

__all__ = ["SMP_INSTALL_HINT", "SmpUnetPeer"]
