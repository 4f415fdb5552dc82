"""Contrastive distillation on TRL: losses, schedules, trainer, merging and validation."""
