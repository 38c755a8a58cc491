"""The examples in examples/ run end to end at their --quick settings (CI runs them)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    if script.stem in ("fit_occupancy", "fit_audio"):
        from hyperproj.inr import find_audio, find_mesh

        if (find_mesh("bunny00") if script.stem == "fit_occupancy" else find_audio("Front_Center")) is None:
            pytest.skip("Debian test data not installed (bash scripts/fetch_test_data.sh)")
    out_arg = {"fit_audio": tmp_path / "voice.wav", "fit_occupancy": tmp_path / "mesh.ply"}.get(script.stem, tmp_path)
    out = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(out_arg)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip(), "the example printed nothing"
