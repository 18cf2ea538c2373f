"""attribution/passive.py: the source classifier of Table 3's passive baseline."""

from __future__ import annotations

import pytest
import torch

from attribution.passive import SourceClassifier, predict, train_classifier


def sources(n_per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three sources told apart by a faint pattern only (as generators that differ by a fingerprint): noise images,
    plus a +-16 checkerboard in one channel for source 1 and in another for source 2; source 0 has none."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(60, 196, (3 * n_per_class, 3, 16, 16), generator=g)
    y = torch.arange(3).repeat_interleave(n_per_class)
    board = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 32 - 16)
    x[y == 1, 0] += board
    x[y == 2, 2] += board
    return x.clamp(0, 255).to(torch.uint8), y


def test_the_classifier_learns_sources_that_differ_by_a_faint_pattern():
    x, y = sources(64)
    model = train_classifier(x, y, 3, epochs=15, batch=32, lr=2e-3)
    tx, ty = sources(32, seed=1)
    assert (predict(model, tx) == ty.numpy()).mean() >= 0.95


def test_training_is_reproducible_and_balances_the_classes():
    x, y = sources(16)
    keep = torch.cat([torch.arange(16), torch.arange(16, 20), torch.arange(32, 36)])   # class 0 four times larger
    a = train_classifier(x[keep], y[keep], 3, epochs=2, seed=3)
    b = train_classifier(x[keep], y[keep], 3, epochs=2, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert predict(a, x[:0]).shape == (0,)


def test_the_classifier_takes_any_power_of_two_side():
    for r in (4, 32, 128):
        assert SourceClassifier(5, r)(torch.zeros(2, 3, r, r)).shape == (2, 5)
    with pytest.raises(ValueError, match="power of two"):
        SourceClassifier(2, 48)
    with pytest.raises(ValueError, match="one label per image"):
        train_classifier(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), 2)


def test_the_table3_rows_never_replace_a_file_the_script_did_not_write(tmp_path):
    """scripts/table3_passive.py refuses a foreign passive.md / passive.json in --out before reading anything."""
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "heldout").mkdir()
    for name, text in (("passive.md", "my notes\n"), ("passive.json", '{"mine": 1}')):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        (out / name).write_text(text)
        res = subprocess.run([sys.executable, "scripts/table3_passive.py", "--out", str(out), "--heldout",
                              str(tmp_path / "heldout")], cwd=repo, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and name in res.stderr and (out / name).read_text() == text


def test_the_table3_report_never_replaces_a_file_it_did_not_write(tmp_path):
    """scripts/table3_report.py refuses a foreign table3.md / table3.json in --out before reading anything."""
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    for name, text in (("table3.md", "my notes\n"), ("table3.json", '{"mine": 1}')):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        (out / name).write_text(text)
        res = subprocess.run([sys.executable, "scripts/table3_report.py", "--out", str(out)], cwd=repo,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and name in res.stderr and (out / name).read_text() == text
