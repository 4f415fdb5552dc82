"""inference: test.csv -> retrieval -> answers -> submission.csv, and the FSKU evaluation."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
