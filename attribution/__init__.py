"""Attribution: the registry of issued fingerprints, and detection statistics (p-values, calibration,
decisions)."""
