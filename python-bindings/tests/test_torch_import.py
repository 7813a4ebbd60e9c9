"""gpuml and torch in one interpreter, in either order (issue 13).

libgpuml links no libnccl / libcudnn (they are dlopen'd when first needed),
so importing gpuml first no longer hands torch an older NCCL. Each order
runs in a fresh interpreter, since a module cannot be unloaded. Skipped
where torch is not installed."""
import os
import subprocess
import sys

import pytest

from conftest import UNDER_ASAN

SCRIPT = """
import {first}, {second}
import numpy as np
import gpuml, torch
y = np.asarray(gpuml.relu(np.arange(6, dtype=np.float32) - 2.5))
assert y.tolist() == [0.0, 0.0, 0.0, 0.5, 1.5, 2.5], y
assert torch.distributed.is_available() is not None  # pulls in torch's NCCL-linked parts
assert torch.relu(torch.arange(3.0) - 1).tolist() == [0.0, 0.0, 1.0]
print("ok", torch.__version__, gpuml.version())
"""


def _have_torch():
    r = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(UNDER_ASAN, reason="torch is not loaded into an ASan-preloaded interpreter")
@pytest.mark.parametrize("first,second", [("gpuml", "torch"), ("torch", "gpuml")])
def test_import_order(first, second):
    if not _have_torch():
        pytest.skip("torch is not installed")
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(first=first, second=second)], capture_output=True,
                       text=True, env=dict(os.environ), timeout=300)
    assert r.returncode == 0, f"import {first} then {second} failed:\n{r.stdout}\n{r.stderr}"
    assert r.stdout.startswith("ok")
