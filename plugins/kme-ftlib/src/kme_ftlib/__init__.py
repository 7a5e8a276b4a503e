"""Shared machinery of fine-tuning editors (FT-L, FT-M, RecAdam, F-Learning)."""
