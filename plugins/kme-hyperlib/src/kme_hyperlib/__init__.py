"""Shared machinery of trained editors (MEND, KE, SLAG, KGEditor, Editable Training)."""
