"""training/run_state.py: which earlier run a rerun continues, snapshot names, and error lines."""

import json

import pytest
import torch

from dnnlib.util import OutputPathError
from training.run_state import check_snapshot_target, error_line, find_resumable_run, save_training_state, snapshot_tag


def _run(outdir, name, options):
    run = outdir / name
    run.mkdir(parents=True)
    (run / "training_options.json").write_text(json.dumps(options))
    save_training_state(run, 0, {"x": torch.zeros(1)})
    return run


def test_rerun_finds_the_run_with_the_same_trajectory(tmp_path):
    old = _run(tmp_path, "00000-a", {"lr": 0.002, "total_kimg": 10, "metrics": ["fp_bit_acc1k"]})
    # More kimg, other metrics, an Inception, a named config (its options are compared one by one), and
    # options that are off (None, False) or missing in an older run.
    same = {"lr": 0.002, "total_kimg": 20, "metrics": [], "inception": "inc.pt", "augment_fp": None,
            "channels_last": False, "cfg": "paper"}
    assert find_resumable_run(tmp_path, same) == old
    assert find_resumable_run(tmp_path, {**same, "augment_fp": "noise:0-0.15@0.5"}) is None
    assert find_resumable_run(tmp_path, {**same, "channels_last": True}) is None
    assert find_resumable_run(tmp_path, {**same, "lr": 0.001}) is None


def test_runs_that_named_the_bit_count_c_dim_or_bits_still_continue(tmp_path):
    gan = _run(tmp_path / "gan", "00000-a", {"lr": 0.002, "c_dim": 32})
    ae = _run(tmp_path / "ae", "00000-b", {"lr": 0.001, "bits": 100})
    assert find_resumable_run(tmp_path / "gan", {"lr": 0.002, "n_bits": 32}) == gan
    assert find_resumable_run(tmp_path / "gan", {"lr": 0.002, "n_bits": 64}) is None
    assert find_resumable_run(tmp_path / "ae", {"lr": 0.001, "n_bits": 100}) == ae


def test_snapshot_tags_are_unique_keep_whole_kimg_names_and_sort_in_training_order():
    counts = [0, 8, 16, 256, 992, 1000, 1008, 1500, 2000, 52000, 52256, 999000, 999992]
    names = [f"network-snapshot-{snapshot_tag(n)}.safetensors" for n in counts]
    assert len(set(names)) == len(names)
    assert sorted(names) == names
    grids = [f"fakes-arbitrary-{snapshot_tag(n)}.png" for n in counts]
    assert sorted(grids) == grids
    assert snapshot_tag(52000) == "000052" and snapshot_tag(256) == "000000_256" and snapshot_tag(8) == "000000_008"


def test_a_snapshot_replaces_only_its_own_earlier_copy(tmp_path):
    from networks import build_networks, save_network

    nets = build_networks("quick32", which=("F",), n_bits=4)
    path = tmp_path / "network-snapshot-000000_016.safetensors"
    check_snapshot_target(path, "00000-run", 16)                       # missing: fine
    save_network(path, extra={"kimg": 0.016, "run": "00000-run"}, F=nets["F"])
    check_snapshot_target(path, "00000-run", 16)                       # this run's, same progress: fine
    for run, nimg in (("00001-other", 16), ("00000-run", 32)):
        with pytest.raises(OutputPathError, match="was not written by this run"):
            check_snapshot_target(path, run, nimg)
    path.write_bytes(b"not a network")
    with pytest.raises(OutputPathError, match="refusing to overwrite it"):
        check_snapshot_target(path, "00000-run", 16)
    link = tmp_path / "network-snapshot-000000_032.safetensors"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputPathError):
        check_snapshot_target(link, "00000-run", 32)


def test_an_error_from_another_process_is_reported_by_its_own_message():
    trace = ("\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n"
             '  File "x.py", line 1, in f\n    raise DatasetError(...)\n'
             "data.dataset.DatasetError: data.zip: not a dataset zip\n")
    error = torch.multiprocessing.ProcessRaisedException(trace, 1, 1234)
    assert error_line(error) == "data.zip: not a dataset zip"
    worker = ValueError("Caught DatasetError in DataLoader worker process 0.\nOriginal " + trace.strip())
    assert error_line(worker) == "data.zip: not a dataset zip"
    full = OSError(28, "No space left on device", "/runs/x/stats.jsonl")
    assert error_line(full) == "No space left on device: /runs/x/stats.jsonl; check that path and its permissions"
    assert error_line(ValueError("two\nlines")) == "two lines"
