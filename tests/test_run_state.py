"""training/run_state.py: which earlier run a rerun continues."""

import json

import torch

from training.run_state import find_resumable_run, save_training_state


def _run(outdir, name, options):
    run = outdir / name
    run.mkdir(parents=True)
    (run / "training_options.json").write_text(json.dumps(options))
    save_training_state(run, 0, {"x": torch.zeros(1)})
    return run


def test_rerun_finds_the_run_with_the_same_trajectory(tmp_path):
    old = _run(tmp_path, "00000-a", {"lr": 0.002, "total_kimg": 10, "metrics": ["fp_bit_acc1k"]})
    # More kimg, other metrics, an Inception, and options that are off (None, False) or missing in an older run.
    same = {"lr": 0.002, "total_kimg": 20, "metrics": [], "inception": "inc.pt", "augment_fp": None,
            "channels_last": False}
    assert find_resumable_run(tmp_path, same) == old
    assert find_resumable_run(tmp_path, {**same, "augment_fp": "noise:0-0.15@0.5"}) is None
    assert find_resumable_run(tmp_path, {**same, "channels_last": True}) is None
    assert find_resumable_run(tmp_path, {**same, "lr": 0.001}) is None
