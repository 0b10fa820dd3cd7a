"""Vertebral fracture detection in CT."""

__version__ = "0.1.0"
