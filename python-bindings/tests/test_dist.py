"""Communicators and data-parallel training from Python."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import UNDER_ASAN
from mpi_worker import CFG

import gpuml


def test_self_communicator_collectives():
    c = gpuml.Communicator("self")
    assert (c.rank, c.size, c.device, c.ok) == (0, 1, "cpu", True)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(c.allreduce(x, "avg"), x)
    y = x.copy()
    assert c.allreduce(y, inplace=True) is y
    np.testing.assert_array_equal(c.allgather(x), x)
    assert c.broadcast(x) is x and c.shard_rows(10) == (0, 10)
    c.barrier()
    with pytest.raises(gpuml.InvalidArgumentError, match="op 'prod'"):
        c.allreduce(x, "prod")
    with pytest.raises(gpuml.InvalidArgumentError, match="in place"):
        c.broadcast(np.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(gpuml.InvalidArgumentError, match="backend"):
        gpuml.Communicator("gloo")


def test_one_rank_data_parallel_is_bitwise_plain_training(rng):
    batches = []
    for _ in range(4):
        rs = np.array([0, 4, 9, 15])
        batches.append((rng.normal(size=(15, 3)).astype(np.float32), rng.integers(0, 2, 3), rs))
    a = gpuml.Trainer(gpuml.Model.from_config(CFG, seed=2), "adam", comm=gpuml.Communicator("self"))
    b = gpuml.Trainer(gpuml.Model.from_config(CFG, seed=2), "adam")
    for x, lab, rs in batches:
        assert a.step(inputs=x, target=lab, row_splits=rs) == b.step(inputs=x, target=lab, row_splits=rs)
    assert a.model.parameter_slab().tobytes() == b.model.parameter_slab().tobytes()
    assert a.ddp.num_buckets >= 1


@pytest.mark.skipif(UNDER_ASAN, reason="mpirun under the ASan preload: the C dist tests cover ASan")
def test_two_ranks_over_mpi():
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if not mpirun or not gpuml.has_feature("mpi"):
        pytest.skip("needs mpirun and a gpuml built with MPI")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(gpuml.__file__).resolve().parents[1]))
    worker = Path(__file__).with_name("mpi_worker.py")
    r = subprocess.run([mpirun, "--oversubscribe", "--bind-to", "none", "-np", "2", sys.executable, str(worker)],
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK rank 0 of 2" in r.stdout and "OK rank 1 of 2" in r.stdout


def test_in_place_collectives_refuse_read_only_arrays():
    c = gpuml.Communicator("self")
    x = np.zeros(4, np.float32)
    x.flags.writeable = False
    with pytest.raises(gpuml.InvalidArgumentError, match="writable"):
        c.broadcast(x)
    with pytest.raises(gpuml.InvalidArgumentError, match="writable"):
        gpuml.batch_norm(np.ones((3, 4), np.float32), running_mean=x, running_var=np.ones(4, np.float32))
