import gzip
import struct

import numpy as np
import pytest

from bench import data


def test_vendored_mnist_checksums_and_shapes(mnist):
    assert mnist.source == "vendored"
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    # The facts PROVENANCE.md gives for the real MNIST (not a resample).
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert abs(mnist.x_train.mean() - 33.318421) < 1e-5


def test_corrupted_vendored_copy_is_rejected(tmp_path, monkeypatch, mnist):
    x = mnist.x_train.copy()
    x[123, 14, 14] ^= 1  # one bit of one pixel
    bad = tmp_path / "mnist.npz"
    np.savez_compressed(bad, x_train=x, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    monkeypatch.setattr(data, "VENDORED", bad)
    with pytest.raises(data.DataError, match="checksum mismatch for x_train"):
        data.load()


def test_truncated_file_is_a_clear_error(tmp_path):
    p = tmp_path / "m.npz"
    p.write_bytes(data.VENDORED.read_bytes()[:1000])
    with pytest.raises(data.DataError, match="not a readable .npz"):
        data.load(p)


@pytest.mark.parametrize("mutate, msg", [
    (lambda a: a.update(x_train=a["x_train"][:, :27]), r"expected \(N, 28, 28\)"),
    (lambda a: a.update(x_test=a["x_test"].astype(np.float32)), "expected uint8"),
    (lambda a: a.update(y_train=np.where(a["y_train"] == 3, 11, a["y_train"]).astype(np.uint8)), "label 11"),
    (lambda a: a.update(y_test=a["y_test"][:-1]), "to match x_test"),
    (lambda a: a.pop("y_test"), "missing array"),
])
def test_user_npz_with_wrong_content_is_rejected(tmp_path, mnist, mutate, msg):
    arrays = {"x_train": mnist.x_train[:100], "y_train": mnist.y_train[:100],
              "x_test": mnist.x_test[:50], "y_test": mnist.y_test[:50]}
    mutate(arrays)
    p = tmp_path / "user.npz"
    np.savez(p, **arrays)
    with pytest.raises(data.DataError, match=msg):
        data.load(p)


def _write_idx(path, arr, gz):
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + arr.tobytes())


@pytest.mark.parametrize("gz", [False, True])
def test_idx_and_npz_loading_agree(tmp_path, mnist, gz):
    for key, stem in data.IDX_NAMES.items():
        _write_idx(tmp_path / (stem + (".gz" if gz else "")), getattr(mnist, key), gz)
    idx = data.load(tmp_path)
    for key in data.KEYS:
        assert np.array_equal(getattr(idx, key), getattr(mnist, key))
    assert idx.sha256 == mnist.sha256  # same identity as the vendored arrays


def test_idx_with_lying_header_is_rejected(tmp_path, mnist):
    for key, stem in data.IDX_NAMES.items():
        _write_idx(tmp_path / stem, getattr(mnist, key)[:10], False)
    p = tmp_path / data.IDX_NAMES["x_test"]
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(data.DataError, match="payload"):
        data.load(tmp_path)


def test_batches_are_float_rows_in_unit_range_and_deterministic(mnist):
    x, y = mnist.train_batch(seed=7, step=3, batch_size=64)
    assert x.dtype == np.float32 and x.shape == (64, 28, 28) and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.99
    x2, y2 = mnist.train_batch(seed=7, step=3, batch_size=64)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    _, y3 = mnist.train_batch(seed=8, step=3, batch_size=64)
    assert not np.array_equal(y, y3)


def test_batch_order_covers_each_epoch_exactly_once():
    n, b = 1000, 64
    idx = np.concatenate([data.batch_indices(n, 0, s, b) for s in range(2 * n // b + 2)])
    first, second = idx[:n], idx[n:2 * n]
    assert sorted(first.tolist()) == list(range(n)) and sorted(second.tolist()) == list(range(n))
    assert not np.array_equal(first, second)  # a fresh permutation per epoch


def test_a_preloaded_set_is_given_read_only_and_read_again_once_its_file_changes(tmp_path, monkeypatch, mnist):
    """A warm parent's preload (bench.data.preload) serves its forked children the very arrays it
    verified, read-only, so no worker can change what the next is given; a file changed since is
    read and verified again rather than trusted."""
    copy = tmp_path / "mnist.npz"
    copy.write_bytes(data.VENDORED.read_bytes())
    monkeypatch.setattr(data, "VENDORED", copy)
    data.forget_preload()
    data.preload()
    first = data.load()
    assert data.load() is first and first.sha256 == mnist.sha256
    with pytest.raises(ValueError, match="read-only"):
        first.x_train[0, 0, 0] = 1
    x = mnist.x_train.copy()
    x[7, 7, 7] ^= 1
    np.savez_compressed(copy, x_train=x, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    with pytest.raises(data.DataError, match="checksum mismatch for x_train"):
        data.load()


def test_a_warm_parent_preloads_the_data_and_leaves_a_bad_file_to_its_children(monkeypatch):
    from bench.workers import zygote

    data.forget_preload()
    assert zygote.preload_data() == [] and data.preloaded() is not None

    def broken() -> None:
        raise data.DataError("corrupt")

    monkeypatch.setattr(data, "preload", broken)
    assert zygote.preload_data() == ["bench.data: DataError"]
