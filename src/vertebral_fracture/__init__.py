"""Vertebral fracture detection in CT."""

import os

# albumentations asks PyPI for a newer release at every import: a network request at run
# time (scans may live on offline machines, where it waits for DNS). Users may still opt in.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
