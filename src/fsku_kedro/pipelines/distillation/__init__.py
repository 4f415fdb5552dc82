"""Contrastive distillation of the student from the teacher (DistiLLM-2 on TRL)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
