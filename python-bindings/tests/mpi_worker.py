"""One rank of test_dist.py's MPI run (mpirun -np 2 python mpi_worker.py)."""
import sys

import numpy as np

import gpuml

CFG = {"inputs": [{"name": "x", "features": 3}],
       "nodes": [{"name": "d1", "op": "linear", "inputs": ["x"], "out": 8},
                 {"name": "a1", "op": "tanh", "inputs": ["d1"]},
                 {"name": "pool", "op": "global_pool", "inputs": ["a1"], "reduce": "mean"},
                 {"name": "cls", "op": "linear", "inputs": ["pool"], "out": 2}],
       "outputs": ["cls"]}


def main():
    comm = gpuml.Communicator("mpi", timeout=60)
    r, n = comm.rank, comm.size
    # collectives on numpy arrays
    x = np.full((2, 3), r + 1, np.float32)
    assert (comm.allreduce(x) == sum(range(1, n + 1))).all()
    assert (comm.allreduce(x, "max") == n).all()
    g = comm.allgather(np.full((r + 1, 2), r, np.int64))  # uneven rows
    assert g.shape == (n * (n + 1) // 2, 2) and (g[:1] == 0).all() and (g[-n:] == n - 1).all()
    b = np.full(4, r, np.float64)
    comm.broadcast(b, root=n - 1)
    assert (b == n - 1).all()
    # data parallel: every rank takes its share of each batch's events
    rng = np.random.default_rng(5)
    model = gpuml.Model.from_config(CFG, seed=100 + r)  # different weights: rank 0's are broadcast
    tr = gpuml.Trainer(model, "sgd", lr=0.1, comm=comm)
    ref = gpuml.Model.from_config(CFG, seed=100)        # the same training in one process
    tr_ref = gpuml.Trainer(ref, "sgd", lr=0.1)
    for _ in range(5):
        sizes = rng.integers(3, 9, size=2 * n)
        rs = np.concatenate([[0], np.cumsum(sizes)])
        xs = rng.normal(size=(rs[-1], 3)).astype(np.float32)
        lab = rng.integers(0, 2, size=2 * n)
        mine = slice(2 * r, 2 * r + 2)
        lo, hi = rs[2 * r], rs[2 * r + 2]
        tr.step(inputs=xs[lo:hi], target=lab[mine], row_splits=rs[2 * r:2 * r + 3] - lo)
        tr_ref.step(inputs=xs, target=lab, row_splits=rs)
    p = model.parameter_slab()
    np.testing.assert_allclose(p, ref.parameter_slab(), rtol=1e-5, atol=1e-6)
    every = comm.allgather(p[None, :])
    assert all(every[i].tobytes() == p.tobytes() for i in range(n)), "ranks differ"
    print(f"OK rank {r} of {n}, {tr.ddp.num_buckets} buckets", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
