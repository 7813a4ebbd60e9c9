"""Datasets written by the C writer, read by h5py and by the C reader, and
batches from the C loader."""
import numpy as np
import pytest
from conftest import ragged

import gpuml


def make(tmp_path, rng, sizes=(4, 0, 7, 2, 9, 1)):
    x, rs = ragged(rng, list(sizes), 3)
    truth = rng.integers(-1, 3, size=len(x)).astype(np.int32)
    label = np.arange(len(sizes), dtype=np.int64) * 10
    path = tmp_path / "data.h5"
    gpuml.write_dataset(path, rs, {"features": x, "truth": truth, "event/label": label},
                        columns={"features": ["x", "y", "z"]})
    return path, x, rs, truth, label


def test_write_then_read_with_h5py_and_gpuml(tmp_path, rng, h5py):
    path, x, rs, truth, label = make(tmp_path, rng)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["row_splits"][...], rs)
        np.testing.assert_array_equal(f["features"][...], x)
        np.testing.assert_array_equal(f["event/label"][...], label)
        assert [c.decode() if isinstance(c, bytes) else c for c in f["features"].attrs["columns"]] == ["x", "y", "z"]
    ds = gpuml.Dataset(path)
    assert (ds.num_events, ds.num_rows, len(ds)) == (6, len(x), 6)
    assert ds.fields["features"] == gpuml.Field("features", False, "float32", (3,))
    assert ds.fields["event/label"].per_event and ds.fields["truth"].shape == ()
    assert ds.columns("features") == ["x", "y", "z"]
    rs2, f = ds.read(2, 3)
    np.testing.assert_array_equal(rs2, rs[2:6] - rs[2])
    np.testing.assert_array_equal(f["features"], x[rs[2]:rs[5]])
    np.testing.assert_array_equal(f["event/label"], label[2:5])
    with pytest.raises(gpuml.NotFoundError):
        ds.read(0, 1, ["nope"])
    with pytest.raises(gpuml.IOError):
        gpuml.Dataset(tmp_path / "nope.h5")


def test_write_dataset_validates(tmp_path):
    with pytest.raises(gpuml.ShapeError, match="'features'"):
        gpuml.write_dataset(tmp_path / "a.h5", [0, 3], {"features": np.zeros((4, 2), np.float32)})
    with pytest.raises(gpuml.InvalidArgumentError):
        gpuml.write_dataset(tmp_path / "a.h5", [1, 3], {"features": np.zeros((2, 2), np.float32)})
    with pytest.raises(gpuml.DtypeError):
        gpuml.write_dataset(tmp_path / "a.h5", [0, 2], {"s": np.array(["a", "b"])})
    assert not (tmp_path / "a.h5").exists()


def test_loader_epoch_covers_every_event_once(tmp_path, rng):
    path, x, rs, truth, label = make(tmp_path, rng)
    ld = gpuml.Loader(path, ["features", "event/label"], max_events=2, seed=3)
    assert ld.num_batches() == 3
    ids = []
    for b in ld:
        assert b.num_events <= 2 and b.epoch == 0
        ev = b.event_ids
        ids += ev.tolist()
        want = np.concatenate([x[rs[e]:rs[e + 1]] for e in ev])
        np.testing.assert_array_equal(b["features"], want)
        np.testing.assert_array_equal(b.fields["event/label"], label[ev])
        rsb = b.row_splits
        np.testing.assert_array_equal(np.diff(rsb), np.diff(rs)[ev])
        # the numpy arrays are views of the C batch's memory
        assert b["features"].ctypes.data == b.field_tensor(0).data_ptr
    assert sorted(ids) == list(range(6))
    assert ld.position[:2] == (1, 0)
    # a fixed seed gives the same plan on every run
    again = [b.event_ids.tolist() for b in gpuml.Loader(path, ["features"], max_events=2, seed=3)]
    assert sum(again, []) == ids
    with pytest.raises(gpuml.NotFoundError):
        gpuml.Loader(path, ["nope"])
