"""Answering competition questions with a causal LM."""
