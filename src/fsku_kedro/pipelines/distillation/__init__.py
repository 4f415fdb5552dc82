"""Contrastive distillation of the student from the teacher (DistiLLM-2 on TRL)."""

from .pipeline import configured_rounds, create_pipeline, graph_rounds

__all__ = ["configured_rounds", "create_pipeline", "graph_rounds"]
