"""General PyTorch helpers and the low-level ops the networks are built from."""
