"""Shared fixtures. The tests load the library named by $GPUML_LIBRARY (meson
test sets it to the build tree's), else the bundled / in-tree one."""
import os

import numpy as np
import pytest

UNDER_ASAN = "address" in os.environ.get("GPUML_SANITIZE", "")

import gpuml


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def torch():
    if UNDER_ASAN:
        pytest.skip("torch is not loaded into an ASan-preloaded interpreter")
    return pytest.importorskip("torch")


@pytest.fixture
def h5py():
    return pytest.importorskip("h5py")


@pytest.fixture
def ctx1():
    """A CPU context with one thread (for determinism checks)."""
    return gpuml.Context("cpu", num_threads=1)


def ragged(rng, sizes, d, scale=1.0):
    """Points [N, d] float32 and row_splits for events of the given sizes."""
    rs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    x = (rng.normal(size=(int(rs[-1]), d)) * scale).astype(np.float32)
    return x, rs
