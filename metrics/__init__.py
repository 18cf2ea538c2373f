"""Metrics (metric_main.py: the registry), FID, weight-free image and fingerprint metrics, detection statistics,
and the robustness suite."""
