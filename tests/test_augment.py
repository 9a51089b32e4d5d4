"""Augmentation: the Numba kernel gives the reference's bytes, and training uses it."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from fastmlp import MLP
from kernels import augment_numba, augment_reference
from kernels.augment_reference import KINDS, augment_params, kind_code

SIDE = 12


def digits(n=40, seed=0):
    """Blobby synthetic uint8 'digits' on a 12x12 canvas, with a label per quadrant."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, SIDE, SIDE), np.uint8)
    labels = rng.integers(0, 4, n)
    for image, label in zip(images, labels, strict=True):
        top, left = 2 + 4 * (label // 2), 2 + 4 * (label % 2)
        image[top : top + 4, left : left + 4] = rng.integers(150, 256, (4, 4))
    return images.reshape(n, -1), labels


def both(kind, seed, counter=0, rows=None, **overrides):
    X, _ = digits()
    rows = np.arange(len(X))[::-3] if rows is None else rows
    params = augment_params(kind, SIDE, **overrides)
    ref = np.full((len(rows), SIDE * SIDE), 7, np.uint8)
    fast = ref.copy()
    augment_reference.augment_rows(ref, X, rows, SIDE, kind_code(kind), params, seed, counter)
    augment_numba.augment_rows(fast, X, rows, SIDE, kind_code(kind), params, seed, counter)
    return X, rows, ref, fast


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 12345, 2**64 - 1])
def test_numba_gives_the_reference_bytes(kind, seed):
    X, rows, ref, fast = both(kind, seed, counter=seed % 5)
    np.testing.assert_array_equal(fast, ref)
    assert (ref != X[rows]).any()  # it did distort something


@pytest.mark.parametrize("kind", KINDS)
def test_repeatable_and_seed_dependent(kind):
    _, _, first, _ = both(kind, 3)
    _, _, again, _ = both(kind, 3)
    _, _, other, _ = both(kind, 4)
    _, _, next_epoch, _ = both(kind, 3, counter=1)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any() and (first != next_epoch).any()


def test_an_image_distorts_the_same_whatever_its_chunk_or_threads():
    X, _ = digits()
    params = augment_params("elastic", SIDE)
    whole = np.zeros((len(X), SIDE * SIDE), np.uint8)
    augment_numba.augment_rows(whole, X, np.arange(len(X)), SIDE, 2, params, 9, 2)
    part = np.zeros((5, SIDE * SIDE), np.uint8)
    scratch = augment_numba.scratch_for(SIDE, blocks=3)  # the parallel path
    augment_numba.augment_rows(part, X, np.arange(10, 15), SIDE, 2, params, 9, 2, scratch)
    np.testing.assert_array_equal(part, whole[10:15])


def mnist_like(n=60, seed=0, side=28):
    """Strokes on a 28x28 canvas, some touching the border (the kernel's checked path)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, side, side), np.uint8)
    for k, image in enumerate(images):
        margin = 0 if k % 3 == 0 else 4
        top, left = rng.integers(margin, side // 3, 2)
        bottom, right = rng.integers(2 * side // 3, side - margin, 2)
        image[top:bottom, left : left + 3] = rng.integers(1, 256, (bottom - top, 3))
        image[top : top + 2, left:right] = 200
        image[bottom - 1, rng.integers(left, right)] = 255
    images[1] = 0  # a blank image stays blank
    return images.reshape(n, -1)


@pytest.mark.parametrize(
    "kind, overrides",
    [
        ("affine", {}),
        ("affine", {"max_rotation": 90.0, "max_scale": 0.5, "max_shear": 0.5, "max_shift": 6}),
        ("affine", {"max_rotation": 0.0, "max_scale": 0.0, "max_shear": 0.0, "max_shift": 3}),
        ("elastic", {}),
        ("elastic", {"alpha": 200.0, "sigma": 0.7}),  # grid spacing 2
        ("elastic", {"alpha": 30.0, "sigma": 0.2}),  # spacing 1: a point per pixel
        ("elastic", {"alpha": 60.0, "sigma": 2.3}),  # spacing 7: 65536 // 7 leaves a rest
        ("elastic", {"alpha": 90.0, "sigma": 9.0}),  # spacing 27: 3 x 3 points
        ("affine+elastic", {}),
        ("affine+elastic", {"max_rotation": 45.0, "alpha": 80.0}),
    ],
)
def test_full_size_images_the_reference_bytes_with_any_strength(kind, overrides):
    """The kernel samples only where the footprint meets the ink; the reference samples
    every pixel: equal bytes show nothing with ink was skipped, at the border too."""
    X = mnist_like()
    rows = np.r_[np.arange(len(X)), np.arange(10)]
    params = augment_params(kind, 28, **overrides)
    ref = np.full((len(rows), 784), 7, np.uint8)
    fast = ref.copy()
    for counter in (0, 3):
        augment_reference.augment_rows(ref, X, rows, 28, kind_code(kind), params, 5, counter)
        augment_numba.augment_rows(fast, X, rows, 28, kind_code(kind), params, 5, counter)
        np.testing.assert_array_equal(fast, ref)
        assert (ref[1] == 0).all() and (ref != X[rows]).any()


@pytest.mark.parametrize("side", [2, 5, 17, 31, 33, 40])
@pytest.mark.parametrize("kind", KINDS)
def test_any_side_the_reference_bytes(side, kind):
    """Sides around the kernel's 16 lanes and its 32-byte row copies (rows of pairs past
    32 bytes, a last vector of 1 to 15 lanes), strokes touching every border."""
    X = mnist_like(12, seed=side, side=side) if side >= 12 else _noise(12, side)
    params = augment_params(
        kind, side, **({"alpha": 20.0, "sigma": 1.5} if "elastic" in kind else {})
    )
    rows = np.arange(len(X))
    ref = np.full((len(rows), side * side), 7, np.uint8)
    fast = ref.copy()
    augment_reference.augment_rows(ref, X, rows, side, kind_code(kind), params, 11, 1)
    augment_numba.augment_rows(fast, X, rows, side, kind_code(kind), params, 11, 1)
    np.testing.assert_array_equal(fast, ref)


def _noise(n, side):
    return np.random.default_rng(side).integers(0, 256, (n, side * side)).astype(np.uint8)


def test_non_contiguous_arrays_are_refused_in_one_line():
    X = mnist_like(8)
    out = np.zeros((4, 784), np.uint8)
    with pytest.raises(ValueError, match="needs X as a C-contiguous 2-D uint8 array"):
        augment_numba.augment_rows(out, X[::2], np.arange(4), 28, 1, augment_params("affine"), 0, 0)
    with pytest.raises(ValueError, match="needs out as a C-contiguous"):
        augment_numba.augment_rows(
            np.zeros((784, 4), np.uint8).T, X, np.arange(4), 28, 1, augment_params("affine"), 0, 0
        )


def test_one_scratch_for_every_kind_in_turn():
    """The scratch holds the last image's field, grid and pairs of rows: none may leak into
    the next call, whatever its kind."""
    X = mnist_like()
    rows = np.arange(len(X))[::-1]
    scratch = augment_numba.scratch_for(28)
    boxes = augment_numba.bounding_boxes(X, 28)
    for kind in ("elastic", "affine", "affine+elastic", "shift", "affine"):
        params = augment_params(kind, 28)
        ref = np.zeros((len(rows), 784), np.uint8)
        fast = np.full_like(ref, 7)
        augment_reference.augment_rows(ref, X, rows, 28, kind_code(kind), params, 2, 4)
        augment_numba.augment_rows(fast, X, rows, 28, kind_code(kind), params, 2, 4, scratch, boxes)
        np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("kind", ["affine", "affine+elastic"])
def test_two_threads_sharing_a_chunk_give_the_reference_bytes(kind):
    """With a second thread, each chunk is distorted in pieces by both threads (the
    training thread takes what is left when it needs the chunk): every chunk still holds
    the reference's bytes, in order."""
    from fastmlp.augmenting import Distorter

    X = mnist_like(90, seed=4)
    distort = Distorter(X, kind, chunk_rows=32, backend="numba", threads=2)
    params = augment_params(kind, 28)
    orders = [np.random.default_rng(epoch).permutation(len(X)) for epoch in (1, 2)]
    for epoch, order in zip((1, 2), orders, strict=True):
        # epoch 1 names epoch 2's order: its first chunk is made during epoch 1's last
        made_ahead = distort.pending
        distort.plan(order, 6, epoch, orders[1] if epoch == 1 else None)
        if epoch == 2:  # kept, not made again
            assert made_ahead is not None and distort.pending is made_ahead
        for start in range(0, len(X), distort.chunk):
            rows = order[start : start + distort.chunk]
            got = distort(rows, 6, epoch)
            ref = np.zeros((len(rows), 784), np.uint8)
            augment_reference.augment_rows(ref, X, rows, 28, kind_code(kind), params, 6, epoch)
            assert_entries_of(got, ref)


def test_runs_from_both_ends_hold_every_image_in_order():
    """A chunk's pieces are taken in runs, a quarter of those left at a time, from the
    front and from the back (here the back takes all the rest while the front's first run
    is under way): the bytes and each image's sparse row are still the reference's."""
    from fastmlp import augmenting

    X = mnist_like(90, seed=5)
    rows = np.random.default_rng(3).permutation(len(X))[:70]
    params = augment_params("elastic", 28)
    kernels = [partial(augment_numba.augment_rows, scratch=augment_numba.scratch_for(28))
               for _ in range(2)]  # fmt: skip
    buffer = augmenting._Buffer(len(rows), 784, sparse=True)
    pieces = augmenting._Pieces(buffer, X, rows, 40, 28, kind_code("elastic"), params, 6, 2)
    runs = []

    def back(out, X, rows, *args, **kwargs):
        runs.append(("back", len(rows)))
        kernels[1](out, X, rows, *args, **kwargs)

    def front(out, X, rows, *args, **kwargs):
        runs.append(("front", len(rows)))
        if len(runs) == 1:
            pieces.work(back, from_back=True)
        kernels[0](out, X, rows, *args, **kwargs)

    pieces.work(front)
    ref = np.zeros((len(rows), 784), np.uint8)
    augment_reference.augment_rows(ref, X, rows, 28, kind_code("elastic"), params, 6, 2)
    assert buffer.out is None  # (the kernel makes each image in its scratch)
    assert_entries_of(pieces.result(), ref)
    sizes = [n for side, n in runs if side == "back"]
    assert runs[0] == ("front", 17) and len(sizes) > 3 and sizes[0] > 3 * sizes[-1]
    assert sum(n for _, n in runs) == len(rows)


def entries(sparse):
    """Each row's (column numbers, value bits) of a :class:`kernels.numba.SparseInputs`."""
    rowmap = np.arange(len(sparse)) if sparse.rowmap is None else sparse.rowmap
    return [
        (sparse.cols[a:b].tolist(), sparse.vals[a:b].view(np.int32).tolist())
        for a, b in zip(sparse.starts[rowmap], sparse.starts[rowmap + 1], strict=True)
    ]


def assert_entries_of(sparse, images):
    """``sparse`` holds exactly the entries the numba backend makes of ``images``."""
    from kernels.numba import SparseInputs

    assert isinstance(sparse, SparseInputs) and sparse.shape == images.shape
    assert entries(sparse) == entries(SparseInputs(images))


@pytest.mark.parametrize(
    "side, kind, overrides",
    [(side, kind, {}) for side in (5, 12, 17, 28) for kind in KINDS]
    + [(28, "elastic", {"sigma": 0.2}), (17, "affine+elastic", {"sigma": 0.7})],
)
def test_sparse_rows_written_with_the_images_are_the_trainers(side, kind, overrides):
    """augment_rows(sparse=...) writes each image's non-zero pixels as the first layer
    reads them (kernels.numba.work.sparse_rows of the bytes: same columns, same value
    bits), from the caller's first start on; sides whose pixels are not whole vectors;
    elastic grids of up to 16 points a side (sample16g) and denser (sigma 0.2: sample16e)."""
    from kernels.numba import work as kw

    X = mnist_like(20, seed=side, side=side) if side >= 17 else _noise(20, side)
    rows = np.arange(len(X))[::-1]
    params = augment_params(kind, side, **overrides)
    out = np.empty((len(rows), side * side), np.uint8)
    room = 7 + len(rows) * side * side + 16
    cols = np.full(room, 9999, kw.column_dtype(side * side))
    vals, starts = np.full(room, np.nan, np.float32), np.full(len(rows) + 1, -1, np.int64)
    starts[0] = 7
    augment_numba.augment_rows(out, X, rows, side, kind_code(kind), params, 3, 1,
                               sparse=(cols, vals, starts))  # fmt: skip
    ref = np.empty_like(out)
    augment_reference.augment_rows(ref, X, rows, side, kind_code(kind), params, 3, 1)
    np.testing.assert_array_equal(out, ref)
    c, v, s = kw.sparse_rows(ref, np.arange(len(rows)), kw.INV255)
    np.testing.assert_array_equal(starts, s + 7)
    np.testing.assert_array_equal(cols[7 : starts[-1]], c[: s[-1]])
    np.testing.assert_array_equal(vals[7 : starts[-1]].view(np.int32), v[: s[-1]].view(np.int32))
    assert starts[-1] > 7 + 3 * len(rows)  # some ink in every image
    # without out: each image made in the scratch, the same entries
    alone = (np.full(room, 9999, cols.dtype), np.full(room, np.nan, np.float32),
             np.full(len(rows) + 1, -1, np.int64))  # fmt: skip
    alone[2][0] = 7
    augment_numba.augment_rows(None, X, rows, side, kind_code(kind), params, 3, 1, sparse=alone)
    np.testing.assert_array_equal(alone[2], starts)
    np.testing.assert_array_equal(alone[0][7 : starts[-1]], cols[7 : starts[-1]])
    np.testing.assert_array_equal(alone[1][7 : starts[-1]].view(np.int32),
                                  vals[7 : starts[-1]].view(np.int32))  # fmt: skip


def test_bad_sparse_arrays_are_refused_in_one_line():
    X = mnist_like(4)
    out, rows, params = np.empty((4, 784), np.uint8), np.arange(4), augment_params("affine")
    room = 4 * 784 + 16
    good = (np.zeros(room, np.uint16), np.zeros(room, np.float32), np.zeros(5, np.int64))
    bad = [
        ((good[0].astype(np.int32), good[1], good[2]), "cols as a contiguous uint16"),
        ((good[0], good[1][:-1], good[2]), "at least 3152 entries"),
        ((good[0], good[1], good[2][:4]), "starts of 5 entries"),
    ]
    for sparse, message in bad:
        with pytest.raises(ValueError, match=message):
            augment_numba.augment_rows(out, X, rows, 28, 1, params, 0, 0, sparse=sparse)
    with pytest.raises(ValueError, match="needs out, or sparse rows"):
        augment_numba.augment_rows(None, X, rows, 28, 1, params, 0, 0)
    with pytest.raises(ValueError, match="one-block scratch"):
        augment_numba.augment_rows(out, X, rows, 28, 1, params, 0, 0,
                                   augment_numba.scratch_for(28, 2), sparse=good)  # fmt: skip


def test_sparse_inputs_from_parts_check_their_rows():
    from kernels.numba import SparseInputs

    cols, vals = np.zeros(10, np.uint16), np.zeros(10, np.float32)
    starts = np.array([0, 2, 5, 10], np.int64)
    made = SparseInputs.from_parts(cols, vals, starts, np.array([2, 0], np.int64), 784)
    assert made.shape == (2, 784) and len(made) == 2
    with pytest.raises(ValueError, match="rowmap must index CSR rows 0 .. 2"):
        SparseInputs.from_parts(cols, vals, starts, np.array([3], np.int64), 784)
    with pytest.raises(ValueError, match="bound each row's entries"):
        SparseInputs.from_parts(cols, vals, np.array([0, 2, 11, 10]), np.array([1]), 784)
    with pytest.raises(ValueError, match="cols as a contiguous uint16"):
        SparseInputs.from_parts(cols.astype(np.uint32), vals, starts, np.array([0]), 784)


def test_training_on_the_kernels_sparse_rows_is_training_on_the_bytes(monkeypatch):
    """The chunks' entries written by the kernel train to the very parameters the bytes
    give (train_steps compresses those itself): same entries, same order, same sums."""
    from fastmlp import augmenting, training

    monkeypatch.setattr(training, "MIN_CHUNK_ROWS", 1)  # many chunks an epoch
    X, y = digits(300, seed=5)

    def params():
        model = MLP([SIDE * SIDE, 16, 4], seed=2)
        model.fit(X, y, epochs=2, batch_size=8, progress=False, augment="elastic", threads=2)
        return model.params

    sparse = params()
    monkeypatch.setattr(augmenting._Buffer, "__init__", _bytes_only)
    np.testing.assert_array_equal(sparse, params())


def _bytes_only(self, rows, n_features, sparse):
    self.rows, self.width, self.out = rows, n_features, np.empty((rows, n_features), np.uint8)


def test_elastic_field_is_as_strong_as_simards():
    """The grid's root-mean-square displacement and slope are about those of Simard's
    field for alpha 34, sigma 4 (1.43 and 0.20 here; 1.28 and 0.22 blurred with zeros
    outside the image, 1.38 and 0.24 far from its edges)."""
    params = augment_params("elastic")
    step, points, amplitude = (int(v) for v in params)
    assert (step, points) == (12, 4)  # 12 pixels apart on 28 x 28
    u = np.random.default_rng(0).random((400, 2 * points * points), dtype=np.float32)
    fields = [
        augment_reference.field(
            augment_reference.grid_values(row, amplitude)[: points * points].reshape(points, -1),
            step,
            28,
        )
        for row in u
    ]
    fields = np.array(fields) / 65536.0
    rms = np.sqrt(np.mean(np.square(fields)))
    slope = np.sqrt(np.mean(np.square(np.diff(fields, axis=2))))
    assert 1.3 < rms < 1.55 and 0.17 < slope < 0.25  # Simard, zeros outside: 1.28, 0.22


def test_shift_moves_a_digit_by_whole_pixels():
    X, rows, ref, _ = both("shift", 5, max_shift=2)
    moved = 0
    for image, distorted in zip(
        X[rows].reshape(-1, SIDE, SIDE), ref.reshape(-1, SIDE, SIDE), strict=True
    ):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(np.roll(image, (dy, dx), axis=(0, 1)), distorted)
        ]
        assert len(matches) == 1  # the blob stays inside the canvas, so rolling == shifting
        moved += matches[0] != (0, 0)
    assert moved > 0


def test_elastic_with_alpha_zero_and_affine_with_no_range_are_the_identity():
    X, rows, ref, fast = both("elastic", 1, alpha=0.0)
    np.testing.assert_array_equal(ref, X[rows])
    np.testing.assert_array_equal(fast, X[rows])
    none = {"max_rotation": 0.0, "max_scale": 0.0, "max_shear": 0.0, "max_shift": 0.0}
    X, rows, ref, fast = both("affine", 1, **none)
    np.testing.assert_array_equal(fast, X[rows])


def test_intensity_stays_in_range_and_ink_is_roughly_kept():
    X = np.full((3, SIDE * SIDE), 255, np.uint8)
    out = np.zeros_like(X)
    for kind in KINDS:
        augment_numba.augment_rows(
            out, X, np.arange(3), SIDE, kind_code(kind), augment_params(kind, SIDE), 0, 0
        )
        assert out.dtype == np.uint8 and out.max() == 255  # no wrap-around past 255
    X, rows, ref, _ = both("affine", 2)
    ink = X[rows].astype(float).sum(1)
    assert np.all(np.abs(ref.astype(float).sum(1) / ink - 1) < 0.5)


def test_bad_augment_names_say_what_is_wrong():
    with pytest.raises(ValueError, match="unknown augment 'blur'"):
        augment_params("blur")
    with pytest.raises(ValueError, match="takes"):
        augment_params("shift", alpha=3)


def test_distorting_ahead_on_a_second_thread_changes_nothing(monkeypatch):
    from fastmlp import training

    monkeypatch.setattr(training, "MIN_CHUNK_ROWS", 1)  # many chunks an epoch, each made ahead
    X, y = digits(300, seed=3)

    def params(threads):
        model = MLP([SIDE * SIDE, 16, 4], seed=1)
        model.fit(X, y, epochs=3, batch_size=8, progress=False, augment="elastic", threads=threads)
        return model.params

    np.testing.assert_array_equal(params(1), params(2))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_fit_with_augment_learns_and_repeats(backend):
    X, y = digits(200, seed=1)

    def run():
        model = MLP([SIDE * SIDE, 16, 4], seed=2, backend=backend)
        history = model.fit(X, y, epochs=4, lr=0.1, batch_size=16, progress=False, augment="affine")
        return model, history

    model, history = run()
    again, _ = run()
    np.testing.assert_array_equal(model.params, again.params)
    assert history.options["augment"] == "affine"
    assert history.epochs[-1]["accuracy"] > 0.8
    plain = MLP([SIDE * SIDE, 16, 4], seed=2, backend=backend)
    plain.fit(X, y, epochs=4, lr=0.1, batch_size=16, progress=False)
    assert not np.array_equal(plain.params, model.params)  # the distortions were trained on


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros((20, 10), np.uint8), "distorts square uint8 images; got uint8 rows of 10"),
        (np.zeros((20, 16), np.float32), "got float32 rows of 16"),
    ],
)
def test_non_images_are_refused_in_one_line(X, message):
    model = MLP([X.shape[1], 4, 2], seed=0)
    with pytest.raises(ValueError, match=message) as caught:
        model.fit(X, np.arange(20) % 2, epochs=1, progress=False, augment="shift")
    assert "\n" not in str(caught.value)


def test_unknown_augment_in_fit():
    with pytest.raises(ValueError, match="unknown augment 'zoom'; choose one of shift"):
        MLP([16, 4, 2]).fit(np.zeros((4, 16), np.uint8), [0, 1, 0, 1], augment="zoom")


def test_picture_of_digits_and_their_distortions(tmp_path):
    from PIL import Image

    from fastmlp import pictures

    X, _ = digits(5)
    path = pictures.augmented_digits(X, tmp_path / "a.png", count=2, copies=2)
    with Image.open(path) as image:
        width, height = image.size
    assert width > height > 0  # 2 rows of 1 + 3 kinds x 2 copies = 7 tiles
    with pytest.raises(ValueError, match="needs uint8 images, got float32"):
        pictures.augmented_digits(X.astype(np.float32), tmp_path / "b.png")


def _idx_data(folder, shape):
    from fastmlp import write_idx

    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("t10k", 40)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(
            folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, *shape), np.uint8)
        )
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)


def test_command_line_augment(tmp_path):
    import json
    import subprocess
    import sys

    def train(*extra):
        return subprocess.run(
            [sys.executable, "-m", "fastmlp", "train", "--data-dir", tmp_path, "--epochs", "1",
             "--backend", "numpy", "--quiet", "--save", tmp_path / "m.safetensors", "--force",
             *extra],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    _idx_data(tmp_path, (8, 8))
    done = train("--augment", "elastic", "--json", tmp_path / "r.json")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["options"]["augment"] == "elastic"
    _idx_data(tmp_path, (8, 6))
    refused = train("--augment", "shift")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "distorts square uint8 images; got uint8 rows of 48 features" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
