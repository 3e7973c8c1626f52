"""Tests for arraynet.datasets: MNIST by name, IDX folders, .npz archives, image folders."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

from arraynet import datasets
from arraynet.data import DataError, resolve_data_dir

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


def _error(source: str | Path, **kw) -> str:
    """The one-line message `load` raises for `source` (which it must name)."""
    with pytest.raises(ValueError) as exc:
        datasets.load(source, **kw)
    msg = str(exc.value)
    assert isinstance(exc.value, DataError)
    assert "\n" not in msg and msg.strip() == msg
    return msg


def _rng_images(rng: np.random.Generator, n: int, *shape: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


# -- MNIST by name -----------------------------------------------------------------------------
def test_mnist_by_name(data_dir: Path) -> None:
    d = datasets.load("mnist", data_dir=data_dir)
    assert d.name == "mnist"
    assert d.x_train.shape == (60000, 28, 28, 1) and d.x_test.shape == (10000, 28, 28, 1)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    assert d.y_train.shape == (60000,) and d.y_test.shape == (10000,)
    assert d.num_classes == 10 and d.class_names is None
    assert d.input_shape == (28, 28, 1)
    assert set(np.unique(d.y_test).tolist()) == set(range(10))
    datasets.check_fits((28, 28, 1), 10, d)
    # The same files read as a plain IDX folder (sizes from the headers, no SHA-256 check).
    folder = resolve_data_dir(data_dir)
    g = datasets.load(folder)
    assert g.name == str(folder) and g.num_classes == 10
    for key in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(d, key), getattr(g, key)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), key


def test_unknown_name_or_missing_path(tmp_path: Path) -> None:
    msg = _error("fashion-mnist")
    assert msg.startswith("fashion-mnist: no such file or folder") and "mnist" in msg
    missing = tmp_path / "nope.npz"
    assert _error(missing).startswith(f"{missing}: no such file or folder")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert _error(other).startswith(f"{other}: not a dataset")


# -- .npz --------------------------------------------------------------------------------------
def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_hw_uint8_integer_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    xtr, xte = _rng_images(rng, 6, 8, 8), _rng_images(rng, 4, 8, 8)
    ytr, yte = np.array([0, 1, 2, 3, 0, 1], np.int32), np.array([4, 0, 1, 2], np.uint8)
    path = _save_npz(tmp_path / "d.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    d = datasets.load(path)
    assert d.name == str(path)
    assert d.x_train.shape == (6, 8, 8, 1) and d.x_test.shape == (4, 8, 8, 1)
    assert d.x_train.dtype == np.uint8 and d.x_test.dtype == np.uint8
    np.testing.assert_array_equal(d.x_train[..., 0], xtr)
    np.testing.assert_array_equal(d.x_test[..., 0], xte)
    assert d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    assert d.y_train.tolist() == ytr.tolist() and d.y_test.tolist() == yte.tolist()
    assert d.num_classes == 5  # the largest label (4, in the test set) + 1
    assert d.class_names is None and d.input_shape == (8, 8, 1)
    assert str(path) in repr(d) and "(8, 8, 1)" in repr(d)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_npz_hwc_float_one_hot_labels(tmp_path: Path, dtype: type) -> None:
    rng = np.random.default_rng(1)
    xtr = rng.random((5, 32, 32, 3)).astype(dtype)
    xte = rng.random((3, 32, 32, 3)).astype(dtype)
    ytr, yte = np.array([0, 4, 2, 2, 1]), np.array([3, 0, 1])
    k = 6  # one column more than the largest label: one-hot width sets the class count
    hot = np.eye(k, dtype=np.float32)
    path = _save_npz(tmp_path / "c.npz", x_train=xtr, y_train=hot[ytr], x_test=xte, y_test=hot[yte])
    d = datasets.load(str(path))
    assert d.x_train.shape == (5, 32, 32, 3) and d.x_test.shape == (3, 32, 32, 3)
    assert d.x_train.dtype == np.float32 and d.x_test.dtype == np.float32
    np.testing.assert_array_equal(d.x_train, xtr.astype(np.float32))  # values as stored
    assert d.y_train.dtype == np.int64
    assert d.y_train.tolist() == ytr.tolist() and d.y_test.tolist() == yte.tolist()
    assert d.num_classes == k and d.input_shape == (32, 32, 3)


def test_npz_integer_valued_float_labels_and_int_images(tmp_path: Path) -> None:
    x = np.arange(2 * 3 * 3, dtype=np.int64).reshape(2, 3, 3)
    y = np.array([1.0, 0.0])
    path = _save_npz(tmp_path / "i.npz", x_train=x, y_train=y, x_test=x, y_test=y[:, None])
    d = datasets.load(path)  # y_test is a column (N, 1) of indices, not one-hot
    assert d.y_test.shape == (2,) and d.y_test.tolist() == [1, 0]
    assert d.x_train.dtype == np.uint8 and d.x_train[..., 0].tolist() == x.tolist()
    assert d.y_train.dtype == np.int64 and d.y_train.tolist() == [1, 0]
    assert d.num_classes == 2


def _good(n: int = 4) -> dict[str, np.ndarray]:
    x = np.zeros((n, 4, 4), np.uint8)
    y = np.arange(n) % 3
    return {"x_train": x, "y_train": y, "x_test": x[:2], "y_test": y[:2]}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"x_test": None}, "missing x_test (the archive holds x_train, y_train, y_test)"),
        ({"y_train": np.arange(3)}, "x_train has 4 images but y_train has 3 labels"),
        ({"y_test": np.array([0, -1])}, "y_test holds label -1; class labels start at 0"),
        ({"y_train": np.array([0, 1.5, 2, 0])}, "y_train[1] = 1.5 is not an integer class label"),
        ({"y_train": np.array([0, np.nan, 2, 0])}, "is not an integer class label"),
        ({"y_train": np.array(["a", "b", "c", "d"])}, "expected integer class labels"),
        ({"x_train": np.zeros((0, 4, 4), np.uint8), "y_train": np.zeros(0, int)}, "no images"),
        ({"x_test": np.zeros((2, 5, 4), np.uint8)}, "x_train images are (4, 4, 1) but x_test"),
        ({"x_test": np.zeros((2, 4, 4), np.float32)}, "x_train is uint8 but x_test is float32"),
        ({"x_train": np.zeros((4, 16), np.uint8)}, "x_train has shape (4, 16); expected"),
        ({"x_train": np.full((4, 4, 4), 300, np.int32)}, "values outside 0..255"),
        ({"x_train": np.zeros((4, 4, 4), bool)}, "x_train has dtype bool"),
        ({"x_test": np.full((2, 4, 4), np.inf)}, "x_test holds NaN or infinite values"),
        ({"y_test": np.array([[1, 0], [1, 1]])}, "rows are not one-hot"),
        ({"y_test": np.eye(3)[[0, 1]]}, "both be one-hot or both be indices"),
        ({"y_train": np.zeros((4, 2, 1), int)}, "expected (N,) labels or (N, K) one-hot"),
    ],
)
def test_npz_errors(tmp_path: Path, change: dict, expected: str) -> None:
    arrays = {**_good(), **change}
    path = _save_npz(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if v is not None})
    msg = _error(path)
    assert msg.startswith(f"{path}: ")
    assert expected in msg


def test_npz_one_hot_width_mismatch(tmp_path: Path) -> None:
    g = _good()
    path = _save_npz(tmp_path / "w.npz", **{**g, "y_train": np.eye(3)[g["y_train"]],
                                           "y_test": np.eye(4)[g["y_test"]]})  # fmt: skip
    assert "y_train has 3 one-hot columns but y_test has 4" in _error(path)


def test_npz_unreadable(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    assert _error(garbage).startswith(f"{garbage}: unreadable .npz archive")
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros(3))
    assert _error(single).startswith(f"{single}: not an .npz archive")
    pickled = tmp_path / "pickled.npz"
    g = _good()
    np.savez(pickled, **{**g, "y_train": np.array([0, 1, "x", None], dtype=object)})
    assert _error(pickled).startswith(f"{pickled}: unreadable .npz archive")  # no pickle
    truncated = tmp_path / "truncated.npz"
    np.savez_compressed(truncated, **g)
    truncated.write_bytes(truncated.read_bytes()[:-60])
    assert _error(truncated).startswith(f"{truncated}: unreadable .npz archive")


# -- IDX folders -------------------------------------------------------------------------------
def _idx(arr: np.ndarray) -> bytes:
    """IDX bytes: magic (0, 0, 0x08 = ubyte, ndim), big-endian dims, the data."""
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return head + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


STANDARD = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _write_idx(folder: Path, arrays: dict, names: dict = STANDARD, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        data = _idx(arr)
        if gz:
            (folder / f"{names[key]}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / names[key]).write_bytes(data)


def _idx_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": _rng_images(rng, 7, 6, 5),
        "y_train": np.array([0, 1, 2, 3, 4, 5, 6], np.uint8),
        "x_test": _rng_images(rng, 3, 6, 5),
        "y_test": np.array([7, 0, 1], np.uint8),
    }


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder(tmp_path: Path, gz: bool) -> None:
    arrays = _idx_arrays()
    folder = tmp_path / "fashion"
    _write_idx(folder, arrays, gz=gz)
    d = datasets.load(folder)
    assert d.name == str(folder)
    assert d.x_train.shape == (7, 6, 5, 1) and d.x_test.shape == (3, 6, 5, 1)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    np.testing.assert_array_equal(d.x_train[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(d.x_test[..., 0], arrays["x_test"])
    assert d.y_train.tolist() == list(range(7)) and d.y_test.tolist() == [7, 0, 1]
    assert d.num_classes == 8 and d.class_names is None and d.input_shape == (6, 5, 1)
    d.x_train[0, 0, 0, 0] = 1  # writable arrays that own their memory


def test_idx_folder_with_mnist_files_is_not_hash_checked(tmp_path: Path) -> None:
    arrays = _idx_arrays()
    arrays["x_train"] = np.zeros((7, 28, 28), np.uint8)  # MNIST's names and size, not its bytes
    arrays["x_test"] = np.zeros((3, 28, 28), np.uint8)
    _write_idx(tmp_path, arrays, gz=True)
    assert datasets.load(tmp_path).x_train.shape == (7, 28, 28, 1)


def test_idx_folder_emnist_names(tmp_path: Path) -> None:
    names = {k: f"emnist-digits-{v.replace('t10k', 'test')}" for k, v in STANDARD.items()}
    arrays = _idx_arrays(1)
    _write_idx(tmp_path, arrays, names, gz=True)
    _write_idx(tmp_path, {"x_test": arrays["x_test"]}, names)  # a raw twin of a .gz: raw wins
    (tmp_path / "emnist-digits-mapping.txt").write_text("0 48\n")
    d = datasets.load(tmp_path)
    np.testing.assert_array_equal(d.x_test[..., 0], arrays["x_test"])
    assert d.y_test.tolist() == [7, 0, 1]
    letters = {k: v.replace("digits", "letters") for k, v in names.items()}
    _write_idx(tmp_path, arrays, letters, gz=True)
    msg = _error(tmp_path)
    assert msg.startswith(f"{tmp_path}: several files could be the x_train IDX file (")
    assert "emnist-digits-train-images-idx3-ubyte.gz" in msg
    assert "emnist-letters-train-images-idx3-ubyte.gz" in msg


def test_idx_folder_errors(tmp_path: Path) -> None:
    arrays = _idx_arrays()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _error(empty).startswith(f"{empty}: not a dataset folder (no IDX files")
    _write_idx(empty, {"x_train": arrays["x_train"]})
    msg = _error(empty)
    assert (
        msg == f"{empty}: no train-labels-idx1-ubyte[.gz] (nor a *train-labels* file) in the folder"
    )

    folder = tmp_path / "cut"
    _write_idx(folder, arrays)
    image_file = folder / STANDARD["x_train"]
    image_file.write_bytes(image_file.read_bytes()[:-7])
    expected = 16 + 7 * 6 * 5
    assert _error(folder) == (
        f"{folder}: {image_file.name}: truncated IDX file "
        f"(expected {expected} bytes, got {expected - 7})"
    )
    image_file.write_bytes(image_file.read_bytes()[:10])
    assert "truncated IDX file (expected at least 16 bytes, got 10)" in _error(folder)

    folder = tmp_path / "corrupt"
    _write_idx(folder, arrays, gz=True)
    label_file = folder / f"{STANDARD['y_test']}.gz"
    label_file.write_bytes(label_file.read_bytes()[:-5])
    assert _error(folder).startswith(f"{folder}: {label_file.name}: unreadable file")

    folder = tmp_path / "swapped"
    _write_idx(folder, {**arrays, "y_train": arrays["x_train"]})
    assert "train-labels-idx1-ubyte: bad IDX magic 2051 (expected 2049" in _error(folder)

    folder = tmp_path / "counts"
    _write_idx(folder, {**arrays, "y_test": np.array([1, 2], np.uint8)})
    assert _error(folder) == (
        f"{folder}: t10k-images-idx3-ubyte holds 3 images but t10k-labels-idx1-ubyte holds 2 labels"
    )

    folder = tmp_path / "sizes"
    _write_idx(folder, {**arrays, "x_test": np.zeros((3, 5, 5), np.uint8)})
    assert "x_train images are (6, 5, 1) but x_test images are (5, 5, 1)" in _error(folder)


# -- image folders -----------------------------------------------------------------------------
def _save(path: Path, arr: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(path)


def test_image_folder_grey_png_and_jpeg(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    a = np.full((5, 7), 200, np.uint8)
    b = np.arange(35, dtype=np.uint8).reshape(5, 7)
    _save(root / "train" / "square" / "1.png", a)
    _save(root / "train" / "square" / "2.jpg", np.full((5, 7), 100, np.uint8))
    _save(root / "train" / "circle" / "x.png", b)
    _save(root / "test" / "circle" / "y.JPEG", np.full((5, 7), 50, np.uint8))
    _save(root / "test" / "square" / "z.png", b)
    (root / "train" / "square" / "notes.txt").write_text("not an image")  # ignored
    (root / "train" / ".DS_Store").write_text("")  # ignored
    d = datasets.load(root)
    assert d.name == str(root)
    assert d.class_names == ["circle", "square"] and d.num_classes == 2
    assert d.x_train.shape == (3, 5, 7, 1) and d.x_test.shape == (2, 5, 7, 1)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    assert d.y_train.tolist() == [0, 1, 1] and d.y_test.tolist() == [0, 1]
    np.testing.assert_array_equal(d.x_train[0, ..., 0], b)  # circle/x.png, lossless
    np.testing.assert_array_equal(d.x_train[1, ..., 0], a)  # square/1.png
    assert np.abs(d.x_train[2].astype(int) - 100).max() <= 2  # square/2.jpg, lossy
    assert np.abs(d.x_test[0].astype(int) - 50).max() <= 2
    assert d.input_shape == (5, 7, 1)


def test_image_folder_colour(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 128
    _save(root / "train" / "cat" / "a.png", grey)  # grey, converted to RGB
    _save(root / "train" / "dog" / "b.png", rgba)  # RGBA, alpha dropped
    _save(root / "test" / "cat" / "c.png", grey)
    _save(root / "test" / "dog" / "d.jpg", np.full((3, 4, 3), 90, np.uint8))
    d = datasets.load(root)
    assert d.x_train.shape == (2, 3, 4, 3) and d.x_test.shape == (2, 3, 4, 3)
    assert d.input_shape == (3, 4, 3) and d.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(d.x_train[0], np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(d.x_train[1], rgba[..., :3])
    np.testing.assert_array_equal(d.x_test[0], d.x_train[0])
    assert d.y_train.tolist() == [0, 1] and d.y_test.tolist() == [0, 1]


def _tiny_folder(root: Path) -> None:
    for split in ("train", "test"):
        for cls in ("a", "b"):
            _save(root / split / cls / "0.png", np.zeros((4, 4), np.uint8))


def test_image_folder_errors(tmp_path: Path) -> None:
    root = tmp_path / "sizes"
    _tiny_folder(root)
    _save(root / "test" / "b" / "1.png", np.zeros((4, 5), np.uint8))
    bad = root / "test" / "b" / "1.png"
    assert _error(root) == (
        f"{bad}: image is 4x5 (HxW) but {root / 'train' / 'a' / '0.png'} is 4x4; "
        "all images must share one size"
    )

    root = tmp_path / "broken"
    _tiny_folder(root)
    bad = root / "train" / "b" / "1.png"
    bad.write_bytes(b"\x89PNG not an image")
    assert _error(root).startswith(f"{bad}: not a readable image (")

    root = tmp_path / "deep"
    _tiny_folder(root)
    deep = root / "train" / "a" / "1.png"
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(deep)  # 16-bit grey
    msg = _error(root)
    assert msg.startswith(f"{deep}: I") and "images are not supported" in msg

    root = tmp_path / "classes"
    _tiny_folder(root)
    _save(root / "train" / "c" / "0.png", np.zeros((4, 4), np.uint8))
    _save(root / "test" / "d" / "0.png", np.zeros((4, 4), np.uint8))
    assert _error(root) == (
        f"{root}: train/ and test/ have different class folders "
        "(only in train/: c; only in test/: d)"
    )

    root = tmp_path / "hollow"
    _tiny_folder(root)
    (root / "test" / "a" / "0.png").unlink()
    assert _error(root) == f"{root}: test/a holds no PNG/JPEG images"

    root = tmp_path / "nothing"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    assert _error(root) == f"{root}: train/ holds no class folders"


def test_image_folder_without_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tiny_folder(tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` now raises ImportError
    msg = _error(tmp_path)
    assert "needs Pillow" in msg and "arraynet[image]" in msg


# -- check_fits --------------------------------------------------------------------------------
def test_check_fits(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.random((5, 32, 32, 3)).astype(np.float32)
    y = np.arange(5)
    path = _save_npz(tmp_path / "my.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    d = datasets.load(path)
    datasets.check_fits((32, 32, 3), 5, d)  # fits: no error
    datasets.check_fits([32, 32, 3], np.int64(5), d)
    expected = (
        f"model takes (28, 28, 1) images with 10 classes; "
        f"data '{path}' has (32, 32, 3) images with 5 classes"
    )
    with pytest.raises(ValueError) as exc:
        datasets.check_fits((28, 28, 1), 10, d)
    assert str(exc.value) == expected
    for shape, outputs in [((32, 32, 3), 4), ((32, 32, 1), 5), ((3072,), 5)]:
        with pytest.raises(ValueError, match=r"^model takes .* classes; data .* classes$"):
            datasets.check_fits(shape, outputs, d)


def test_from_arrays() -> None:
    x = np.zeros((3, 2, 2), np.uint8)
    d = datasets.from_arrays(x, [0, 1, 2], x, [2, 1, 0], name="mine", class_names=["a", "b", "c"])
    assert (
        d.x_train.shape == (3, 2, 2, 1) and d.num_classes == 3 and d.class_names == ["a", "b", "c"]
    )
    with pytest.raises(ValueError, match=r"^mine: 2 class names for 3 classes$"):
        datasets.from_arrays(x, [0, 1, 2], x, [2, 1, 0], name="mine", class_names=["a", "b"])


def test_unreadable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: Path):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)
    msg = _error(tmp_path)
    assert msg.startswith(f"{tmp_path}: cannot be read (") and "Permission denied" in msg


# -- the format registry -----------------------------------------------------------------------
_BUILT_IN_EXPECTS = (
    "an .npz file, a folder of IDX files, or a folder with train/ and test/ class folders"
)


@pytest.fixture
def toy_format():
    """A toy format registered for one test: a `.toy` text file of `<label> <pixel>` lines
    (one 1x1 image each, used as both splits)."""
    from arraynet.data import formats

    before = dict(formats.FORMATS)

    @datasets.register_format("toy", lambda path: path.suffix == ".toy", "a .toy file")
    def load_toy(path: Path, name: str) -> datasets.Data:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        if not rows:
            raise DataError(f"{name}: an empty .toy file")
        y = np.array([int(r[0]) for r in rows])
        x = np.array([[[int(r[1])]] for r in rows], dtype=np.uint8)
        return datasets.from_arrays(x, y, x, y, name=name)

    yield load_toy
    formats.FORMATS.clear()
    formats.FORMATS.update(before)


def test_built_in_formats() -> None:
    assert list(datasets.FORMATS) == ["npz", "idx-folder", "image-folder"]


def test_a_registered_format_loads_through_load(tmp_path: Path, toy_format) -> None:
    path = tmp_path / "three.toy"
    path.write_text("0 10\n2 200\n1 0\n")
    d = datasets.load(path)
    assert isinstance(d, datasets.Data) and d.name == str(path)
    assert d.x_train.shape == (3, 1, 1, 1) and d.x_train.dtype == np.uint8
    assert d.x_train[:, 0, 0, 0].tolist() == [10, 200, 0] and d.num_classes == 3
    assert d.y_test.tolist() == [0, 2, 1] and d.y_test.dtype == np.int64
    empty = tmp_path / "empty.toy"
    empty.write_text("")
    assert _error(empty) == f"{empty}: an empty .toy file"
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    expects = _BUILT_IN_EXPECTS.replace(", or ", ", ") + ", or a .toy file"
    assert _error(other) == f"{other}: not a dataset (expected {expects})"
    with pytest.raises(ValueError, match="'toy' is already registered"):
        datasets.register_format("toy", lambda path: False, "a .toy file", toy_format)


def test_a_later_format_is_probed_first(tmp_path: Path, toy_format) -> None:
    """A folder format registered after the built-ins claims a folder before the IDX folder
    format (which takes any folder left)."""
    folder = tmp_path / "marked"
    folder.mkdir()
    (folder / "data.toy").write_text("1 7\n0 9\n")
    assert _error(folder).startswith(f"{folder}: not a dataset folder (no IDX files")
    datasets.register_format(
        "toy-folder",
        lambda path: (path / "data.toy").is_file(),
        "a folder holding data.toy",
        lambda path, name: toy_format(path / "data.toy", name),
    )
    d = datasets.load(folder)
    assert d.name == str(folder) and d.y_train.tolist() == [1, 0]


def test_not_a_dataset_message(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert _error(other) == f"{other}: not a dataset (expected {_BUILT_IN_EXPECTS})"


# -- MNIST for a run ---------------------------------------------------------------------------
#: SHA-256 `data_fingerprint` gives MNIST's training arrays as runs load them, (60000, 28, 28)
#: uint8 images and int64 labels: what the records of existing runs hold, so never changed.
_MNIST_RUN_SHA256 = "7a20c28713f9dfe2c89b1c34d09b169926037fc85ad98ff0f296cde461ed23d7"


def test_run_data_for_mnist(data_dir: Path) -> None:
    from arraynet.data.arrays import data_fingerprint
    from arraynet.train.inputs import load_data

    ds = load_data(None, data_dir=str(data_dir))
    assert isinstance(ds, datasets.Data) and ds.name == "mnist" and ds.num_classes == 10
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.input_shape == (28, 28, 1) and ds.y_train.dtype == np.int64
    assert data_fingerprint(ds.x_train, ds.y_train)["sha256"] == _MNIST_RUN_SHA256


def test_fit_data_checks_mnist_as_runs_always_have(data_dir: Path) -> None:
    """MNIST as a run reads it is checked sample first (a model taking (28, 28) samples
    fits); a `Data` with a channel axis is checked against the model first."""
    import arraynet as an
    from arraynet.layers import Dense, Flatten
    from arraynet.train.inputs import fit_data, load_data

    run_data = load_data(None, data_dir=str(data_dir))
    named = datasets.load("mnist", data_dir=data_dir)

    def model(shape: tuple[int, ...], outputs: int, flatten: bool = True):
        m = an.Sequential([Flatten(), Dense(outputs)] if flatten else [Dense(outputs)],
                          input_shape=shape)  # fmt: skip
        m.build(an.get_backend("numpy"), seed=0)
        return m

    def message(m, data) -> str:
        with pytest.raises(ValueError) as exc:
            fit_data(m, data)
        return str(exc.value)

    assert fit_data(model((28, 28, 1), 10), run_data) == 10
    assert fit_data(model((28, 28), 10), run_data) == 10
    assert message(model((28, 28), 10), named).startswith("model takes (28, 28) images")
    five = model((28, 28, 1), 5)
    assert message(five, run_data) == (
        "labels run from 0 to 9, but the model has 5 outputs (classes 0..4)"
    )
    assert message(five, named) == (
        "model takes (28, 28, 1) images with 5 classes; "
        "data 'mnist' has (28, 28, 1) images with 10 classes"
    )
    twelve = "model takes (28, 28, 1) images with 12 classes; data 'mnist' has (28, 28, 1)"
    assert message(model((28, 28, 1), 12), run_data).startswith(twelve)
    flat = model((784,), 10, flatten=False)
    assert message(flat, run_data) == (
        "the model takes inputs of shape (784,), but the data's samples are (28, 28, 1)"
    )
