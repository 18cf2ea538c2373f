"""Metrics and the robustness suite (arrive with the metrics issue; empty for now)."""
