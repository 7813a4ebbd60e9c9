"""The Python examples still run (with small sizes)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import UNDER_ASAN

import gpuml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"


def run(script, *args, cwd):
    # the examples import the same gpuml package (and library) as this test
    env = dict(os.environ, PYTHONPATH=str(Path(gpuml.__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.skipif(UNDER_ASAN, reason="matplotlib's C++ exceptions trip ASan's __cxa_throw interceptor")
def test_knn_graph_example(tmp_path):
    pytest.importorskip("matplotlib")
    out = run("knn_graph.py", "--out", str(tmp_path / "g.png"), cwd=tmp_path)
    assert "edges" in out and (tmp_path / "g.png").stat().st_size > 10000


def test_train_then_engine_examples(tmp_path):
    out = run("train_gravnet.py", "--events", "24", "--epochs", "1", "--out", str(tmp_path / "m.h5"), cwd=tmp_path)
    assert "epoch losses" in out and "mean beta" in out and (tmp_path / "m.h5").exists()
    out = run("engine_inference.py", "--model", str(tmp_path / "m.h5"), "--events", "40", cwd=tmp_path)
    assert "identical to the threaded ones: True" in out


@pytest.mark.skipif(UNDER_ASAN, reason="torch is not loaded into an ASan-preloaded interpreter")
def test_convert_particlenet_example(tmp_path):
    pytest.importorskip("torch", reason="tools/setup.sh installs torch")
    pytest.importorskip("weaver", reason="tools/setup.sh installs weaver-core")
    out = run("convert_particlenet.py", "--steps", "2", "--events", "24", "--out", str(tmp_path / "pn.h5"),
              cwd=tmp_path)
    assert "largest |gpuml - PyTorch|" in out and (tmp_path / "pn.h5").exists()
