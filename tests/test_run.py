"""training/run.py: the scaffold both training loops share, without training: run folders, ticks and their
rows, TensorBoard, warnings, snapshots, metric lines, training states and resume."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from dnnlib.util import OutputPathError
from torch_utils.distributed import ProcessInfo
from training.run import Run, sanitize_grads_, split_batch

INFO = ProcessInfo()


def make_run(outdir, counters=None, parts=None, **kwargs) -> Run:
    counters = {"step": 0, "cur_nimg": 0, "cur_tick": 0, "tick_start_nimg": 0} if counters is None else counters
    kwargs = {"total_kimg": 0.016, "tick_kimg": 0.008, **kwargs}
    return Run(INFO, outdir, "toy", {"lr": 0.1}, counters, parts or {}, **kwargs)


def test_ticks_write_rows_report_lines_and_warn_once(tmp_path, capsys):
    run = make_run(tmp_path)
    assert run.dir == tmp_path / "00000-toy" and json.loads((run.dir / "training_options.json").read_text())
    with run.starting():
        assert not run.resume()
    c = run.counters
    ticks = []
    while not run.done:
        c["cur_nimg"] += 4
        c["step"] += 1
        run.accumulate({"Loss/b": torch.tensor(float(c["step"])), "Loss/a": 1.0})
        if not run.tick_due():
            continue
        row = run.end_tick(progress={"Progress/step": c["step"]}, resources={"Resources/extra": 0.0})
        run.report(row, f"a {row['Loss/a']:.1f}")
        run.warn_once("stuck")
        ticks.append(run.snapshot_due(2))
    assert ticks == [False, True] and c["cur_tick"] == 2 and c["tick_start_nimg"] == 16
    rows = [json.loads(line) for line in (run.dir / "stats.jsonl").read_text().splitlines()]
    assert list(rows[0]) == ["Loss/a", "Loss/b", "Progress/tick", "Progress/kimg", "Progress/wall_min", "Progress/step",
                             "Timing/sec_per_tick", "Timing/img_per_sec", "Resources/peak_rss_gb", "Resources/extra",
                             "timestamp"]
    assert [r["Loss/b"] for r in rows] == [1.5, 3.5] and [r["Progress/kimg"] for r in rows] == [0.008, 0.016]
    assert run.finish() == run.dir
    log = (run.dir / "log.txt").read_text()
    assert log.count("WARNING: stuck") == 1
    assert "tick 1    kimg 0.0      a 1.0 img/s" in log and "sec/tick" in log and "Done: 0.0 kimg" in log
    assert capsys.readouterr().out == log


def test_state_round_trip_and_rerun_continues_the_same_folder(tmp_path):
    net, buf = torch.nn.Linear(2, 1), torch.zeros([])
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    buf.fill_(3.0)
    run = make_run(tmp_path, parts={"net": net, "opt": opt, "buf": buf})
    with run.starting():
        run.resume()
    run.counters.update(cur_nimg=8, step=2)
    run.save_state()
    run.finish()

    net2, buf2 = torch.nn.Linear(2, 1), torch.zeros([])
    opt2 = torch.optim.Adam(net2.parameters())
    again = make_run(tmp_path, parts={"net": net2, "opt": opt2, "buf": buf2})
    with again.starting():
        assert again.resume()
    assert again.dir == run.dir and again.counters["step"] == 2 and float(buf2) == 3.0
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
    assert opt2.state_dict()["state"][0]["step"] == 1
    assert "Resuming 00000-toy from training-state-000000008.pt" in (run.dir / "log.txt").read_text()
    other = make_run(tmp_path, parts={"net": torch.nn.Linear(3, 1)}, resume=False)
    assert other.dir.name == "00001-toy"


def test_a_failing_start_removes_a_new_folder_but_keeps_a_continued_one(tmp_path):
    run = make_run(tmp_path / "new" / "runs")
    with pytest.raises(OSError), run.starting():
        raise OSError("disk full")
    assert not (tmp_path / "new").exists()
    kept = make_run(tmp_path, parts={"w": torch.zeros(2)})
    kept.save_state()
    again = make_run(tmp_path, parts={"w": torch.zeros(3)})
    with pytest.raises(ValueError, match="does not fit this run's networks"), again.starting():
        again.resume()
    assert again.dir == kept.dir and (kept.dir / "training-state-000000000.pt").is_file()


def test_tensorboard_gets_every_named_value_when_installed(tmp_path, monkeypatch):
    scalars, closed = [], []

    class Writer:
        def __init__(self, logdir):
            assert logdir == str(run.dir)

        def add_scalar(self, key, value, global_step):
            scalars.append((key, global_step))

        def flush(self):
            pass

        def close(self):
            closed.append(True)

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    run = make_run(tmp_path)
    with run.starting():
        pass
    run.counters["cur_nimg"] = 8
    run.accumulate({"Loss/a": 1.0})
    run.end_tick()
    run.finish()
    assert ("Loss/a", 8) in scalars and ("Progress/kimg", 8) in scalars and "timestamp" not in dict(scalars)
    assert closed == [True]


def test_snapshots_and_metric_lines(tmp_path):
    from networks import build_networks, read_header

    F = build_networks("quick32", which=("F",), n_bits=4)["F"]
    run = make_run(tmp_path)
    run.counters["cur_nimg"] = 8
    grids = []
    path = run.save_snapshot("toy", grids.append, F=F)
    assert path.name == "toy-snapshot-000000_008.safetensors" and grids == ["000000_008"]
    assert read_header(path)["extra"] == {"kimg": 0.008, "run": "00000-toy", "options": {"lr": 0.1}}
    run.save_snapshot("toy", grids.append, F=F)          # its own file of the same progress: replaced
    run.report_metric({"acc": 0.5, "metric": "toy_metric"}, path, note="held out", step=2)
    line = json.loads((run.dir / "metric-toy_metric.jsonl").read_text())
    assert line == {"acc": 0.5, "metric": "toy_metric", "snapshot": path.name, "kimg": 0.008, "step": 2}
    assert "metric toy_metric (held out): acc 0.5000" in (run.dir / "log.txt").read_text()
    run.counters["cur_nimg"] = 16
    (run.dir / "toy-snapshot-000000_016.safetensors").write_bytes(b"not ours")
    with pytest.raises(OutputPathError):
        run.save_snapshot("toy", grids.append, F=F)
    assert grids == ["000000_008"] * 2


def test_batch_split_and_the_nan_guard():
    assert split_batch(16, None, 2) == (8, 1) and split_batch(16, 4, 2) == (4, 2)
    with pytest.raises(ValueError, match="multiple of batch_gpu 3"):
        split_batch(16, 3, 2)
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([float("nan"), float("inf"), -float("inf")])
    sanitize_grads_([p, torch.nn.Parameter(torch.zeros(1))])
    assert p.grad.tolist() == [0.0, 1e5, -1e5]
