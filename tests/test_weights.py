"""Weights files carry a SHA-256 of their tensors and record; a changed byte is refused."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from arraynet.io import WeightsError, load_arrays, save_arrays
from arraynet.io import weights as weights_io
from tests.conftest import REPO
from tests.test_cli import one_line_error, run

MODELS = REPO / "models"


def header_of(data: bytes) -> tuple[int, dict]:
    n = int.from_bytes(data[:8], "little")
    return n, json.loads(data[8 : 8 + n])


def small_file(tmp_path, name: str = "w.safetensors"):
    arrays = {
        "b": np.arange(3, dtype=np.float32),
        "a": np.linspace(-1, 1, 12).reshape(3, 4),  # float64
        "s": np.asarray(2.5, dtype=np.float32),  # a scalar
    }
    path = tmp_path / name
    save_arrays(path, arrays, {"epoch": 1, "note": "x"})
    return path, arrays


def flipped(path, at: int, out=None):
    """A copy of `path` (or `path` itself) with the byte at offset `at` XORed with 1."""
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    out = out or path
    out.write_bytes(bytes(data))
    return out


def test_checksum_is_the_documented_digest(tmp_path):
    path, arrays = small_file(tmp_path)
    _, header = header_of(path.read_bytes())
    extra = header["__metadata__"]
    h = hashlib.sha256()
    for name in ("a", "b", "s"):  # sorted names
        v = arrays[name]
        h.update(f"{name}\0{v.dtype.name}\0{','.join(map(str, v.shape))}\0".encode())
        h.update(v.tobytes())
    h.update(b"__metadata__\0" + extra["arraynet"].encode())
    assert extra["sha256"] == h.hexdigest()
    got, meta = load_arrays(path)
    assert meta == {"epoch": 1, "note": "x"}
    assert all(got[k].dtype == v.dtype and np.array_equal(got[k], v) for k, v in arrays.items())


def test_a_flipped_byte_in_the_tensor_data_is_refused(tmp_path):
    path, _ = small_file(tmp_path)
    data = path.read_bytes()
    n, _ = header_of(data)
    for at in range(8 + n, len(data)):  # every byte of the data section
        bad = flipped(path, at, tmp_path / "bad.safetensors")
        with pytest.raises(WeightsError) as e:
            load_arrays(bad)
        msg = str(e.value)
        assert msg.startswith(str(bad)) and "checksum mismatch" in msg and "\n" not in msg


def test_a_flipped_byte_in_the_header_is_a_one_line_error(tmp_path):
    path, _ = small_file(tmp_path)
    n, _ = header_of(path.read_bytes())
    for at in range(0, 8 + n):  # the length field and every byte of the header JSON
        bad = flipped(path, at, tmp_path / "bad.safetensors")
        with pytest.raises(WeightsError) as e:
            load_arrays(bad)
        msg = str(e.value)
        assert msg.startswith(str(bad)) and "\n" not in msg, (at, msg)


def test_files_without_a_checksum_are_refused_unless_allowed(tmp_path, capsys):
    """A file without arraynet's checksum (as written before there was one, or with it
    stripped) is a one-line error; allowed explicitly, it loads with one note per file."""
    arrays = {"w": np.ones((2, 2), dtype=np.float32)}
    old = tmp_path / "old.safetensors"  # as arraynet wrote files before the checksum
    old.write_bytes(st_save(arrays, metadata={"arraynet": json.dumps({"epoch": 3})}))
    quiet = tmp_path / "quiet.safetensors"
    shutil.copy(old, quiet)
    with pytest.raises(WeightsError, match=r"carries no checksum.*--allow-unchecked") as e:
        load_arrays(old)
    assert str(e.value).startswith(str(old)) and "\n" not in str(e.value)
    for _ in range(3):
        got, meta = load_arrays(old, allow_unchecked=True)
        assert meta == {"epoch": 3} and np.array_equal(got["w"], arrays["w"])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(old) in err[0] and "carries no checksum" in err[0]
    load_arrays(quiet, allow_unchecked=True, note_unverified=False)
    assert capsys.readouterr().err == ""
    assert str(quiet.resolve()) not in weights_io._NOTED


def test_every_shipped_file_has_a_valid_checksum(capsys):
    files = sorted(MODELS.glob("*.safetensors"))
    assert files
    for path in files:
        _, header = header_of(path.read_bytes())
        assert len(header["__metadata__"].get("sha256", "")) == 64, path
        load_arrays(path)  # recomputes and compares
    assert "no checksum" not in capsys.readouterr().err


@pytest.mark.slow  # two CLI runs that load MNIST
def test_evaluate_refuses_a_corrupted_model(tmp_path, data_dir):
    src = MODELS / "m4.safetensors"
    n, _ = header_of(src.read_bytes())
    bad = flipped(src, 8 + n + 1000, tmp_path / "m4-bad.safetensors")  # inside a weight
    p = run("evaluate", str(bad), data_dir=data_dir)
    one_line_error(p, "checksum mismatch")
    assert str(bad) in p.stderr and p.stdout == ""
    head = flipped(src, 8 + n // 2, tmp_path / "m4-head.safetensors")  # inside the header
    p = run("evaluate", str(head), "--json", data_dir=data_dir)
    one_line_error(p, str(head))


def test_rewrite_weights_adds_the_checksum_and_keeps_the_tensors(tmp_path):
    import subprocess
    import sys

    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3)}
    meta = {"recipe": {"optimizer": "adam-seed", "lr": 0.01}, "epoch": 2}
    old = tmp_path / "old.safetensors"
    old.write_bytes(st_save(arrays, metadata={"arraynet": json.dumps(meta)}))
    other = tmp_path / "other.safetensors"
    save_arrays(other, arrays, {"recipe": {"optimizer": "sgd"}})
    before = {p: p.read_bytes() for p in (old, other)}
    script = [sys.executable, str(REPO / "scripts" / "rewrite_weights.py")]
    p = subprocess.run([*script, str(old), str(other), "--rename-optimizer", "adam-seed=x"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0 and p.stderr == "", p.stderr
    for path, data in before.items():
        n0, h0 = header_of(data)
        n1, h1 = header_of(path.read_bytes())
        assert path.read_bytes()[8 + n1 :] == data[8 + n0 :]  # the data section, bitwise
        assert {k: v for k, v in h1.items() if k != "__metadata__"} == {
            k: v for k, v in h0.items() if k != "__metadata__"
        }
        assert len(h1["__metadata__"]["sha256"]) == 64
    assert load_arrays(old)[1] == {**meta, "recipe": {"optimizer": "x", "lr": 0.01}}
    assert load_arrays(other)[1] == {"recipe": {"optimizer": "sgd"}}
    p = subprocess.run([*script, str(old), "--rename-optimizer", "nonsense"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and "OLD=NEW" in p.stderr


# -- provenance: the file itself, against its publisher's SHA-256 ------------------------
def test_the_models_manifest_lists_every_shipped_file():
    """models/SHA256SUMS holds the SHA-256 of every shipped weights file and record, in the
    format `sha256sum -c` reads (scripts that write models/ refresh it)."""
    listed = weights_io.manifest_entries(MODELS)
    files = sorted(p.name for p in [*MODELS.glob("*.safetensors"), *MODELS.glob("*.json")])
    assert sorted(listed) == files
    for name, digest in listed.items():
        assert weights_io.file_sha256(MODELS / name) == digest, name


def _rigged_copy(tmp_path):
    """m4 and the models' manifest copied, then m4's weights changed and re-signed with a
    fresh checksum (a valid arraynet file, but not the shipped one)."""
    for name in ("m4.safetensors", "SHA256SUMS"):
        shutil.copy(MODELS / name, tmp_path / name)
    arrays, meta = load_arrays(MODELS / "m4.safetensors")
    arrays = {k: v * 0 if k.endswith("bias") else v for k, v in arrays.items()}
    save_arrays(tmp_path / "m4.safetensors", arrays, meta)
    return tmp_path / "m4.safetensors"


def test_a_resigned_file_passes_the_checksum_but_not_its_manifest(tmp_path):
    from arraynet.backends import get_backend
    from arraynet.io import load_model

    rigged = _rigged_copy(tmp_path)
    load_arrays(rigged)  # the checksum proves integrity only: a re-signed file passes it
    with pytest.raises(WeightsError, match="differs from SHA256SUMS beside it") as e:
        load_model(rigged, get_backend("numpy"))
    assert str(e.value).startswith(str(rigged)) and "\n" not in str(e.value)
    (tmp_path / "SHA256SUMS").unlink()  # without the manifest: only an expected hash tells
    shipped = weights_io.file_sha256(MODELS / "m4.safetensors")
    with pytest.raises(WeightsError, match="is not the expected"):
        load_model(rigged, get_backend("numpy"), sha256=shipped)
    load_model(MODELS / "m4.safetensors", get_backend("numpy"), sha256=shipped.upper())
    with pytest.raises(WeightsError, match="64 hex digits"):
        load_model(rigged, get_backend("numpy"), sha256="abc")


@pytest.mark.slow  # CLI runs
def test_cli_sha256_and_manifest(tmp_path, data_dir):
    rigged = _rigged_copy(tmp_path)
    one_line_error(run("evaluate", str(rigged), data_dir=data_dir), "differs from SHA256SUMS")
    one_line_error(run("export", str(rigged), str(tmp_path / "m.onnx")), "SHA256SUMS")
    assert not (tmp_path / "m.onnx").exists()
    (tmp_path / "SHA256SUMS").unlink()
    shipped = weights_io.file_sha256(MODELS / "m4.safetensors")
    p = run("evaluate", str(rigged), "--sha256", shipped, data_dir=data_dir)
    one_line_error(p, "is not the expected")
    p = run("evaluate", str(MODELS / "m4.safetensors"), "--sha256", shipped, "--json",
            data_dir=data_dir)  # fmt: skip
    assert p.returncode == 0 and json.loads(p.stdout.splitlines()[-1])["sha256"] == [shipped]


def test_an_unchecked_file_is_refused_by_the_cli_unless_allowed(tmp_path):
    from arraynet.backends import get_backend
    from arraynet.io import load_model

    arrays, meta = load_arrays(MODELS / "m4.safetensors")
    bare = tmp_path / "bare.safetensors"  # the checksum stripped
    bare.write_bytes(st_save(arrays, metadata={"arraynet": json.dumps(meta)}))
    with pytest.raises(WeightsError, match="carries no checksum"):
        load_model(bare, get_backend("numpy"))
    load_model(bare, get_backend("numpy"), allow_unchecked=True)
    one_line_error(run("export", str(bare), str(tmp_path / "b.onnx")), "--allow-unchecked")


def test_nonfinite_weights_are_refused_unless_allowed(tmp_path):
    from arraynet.backends import get_backend
    from arraynet.io import load_model

    arrays, meta = load_arrays(MODELS / "m4.safetensors")
    name = sorted(arrays)[1]
    arrays[name] = arrays[name].copy()
    arrays[name].flat[3] = np.nan
    path = tmp_path / "nan.safetensors"
    save_arrays(path, arrays, meta)
    with pytest.raises(WeightsError, match=f"tensor '{name}' holds NaN or infinite") as e:
        load_model(path, get_backend("numpy"))
    assert str(e.value).startswith(str(path))
    model, _ = load_model(path, get_backend("numpy"), allow_nonfinite=True)
    assert np.isnan(np.asarray(model.parameters()[name])).any()
    one_line_error(run("export", str(path), str(tmp_path / "n.onnx")), "NaN or infinite")
    assert not (tmp_path / "n.onnx").exists()
    # serve refuses it before listening (it used to answer every request with a 500)
    one_line_error(run("serve", str(path), "--port", "0"), "NaN or infinite")


# -- check before you allocate ---------------------------------------------------------
def _declaring(tmp_path, layout, tensors=None, name="tiny.safetensors", meta=None):
    """A small, validly checksummed file whose metadata declares `layout`."""
    tensors = tensors or {"0.kernel": np.ones((1, 1), np.float32), "0.bias": np.zeros(1)}
    path = tmp_path / name
    save_arrays(path, tensors, meta if meta is not None else {"layout": layout})
    return path


def test_a_tiny_file_declaring_a_huge_layer_is_refused_cheaply(tmp_path):
    """A ~300-byte file declaring Dense(400000) on 784 inputs: refused from its header,
    before the 1.25 GB of parameters exist (a fresh process, its peak memory measured)."""
    import subprocess
    import sys

    path = _declaring(tmp_path, {"input_shape": [784],
                                 "layers": [{"type": "dense", "units": 400000}]})  # fmt: skip
    assert path.stat().st_size < 400
    code = (  # (VmHWM: this process's own peak; ru_maxrss would count the forked parent's)
        "import re, sys, time\n"
        "from arraynet.backends import get_backend\n"
        "from arraynet.io import WeightsError, load_model\n"
        "b = get_backend('numpy')\n"
        "t = time.perf_counter()\n"
        "try:\n"
        "    load_model(sys.argv[1], b)\n"
        "except WeightsError as e:\n"
        "    print(e)\n"
        "print(time.perf_counter() - t)\n"
        "status = open('/proc/self/status').read()\n"
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                       timeout=120, cwd=REPO)  # fmt: skip
    message, seconds, peak_kb = p.stdout.strip().splitlines()
    assert "tensor '0.kernel' has shape (1, 1), layout needs (784, 400000)" in message
    assert int(peak_kb) < 200 * 1024, f"peak {int(peak_kb) >> 10} MB"
    print(f"refused in {float(seconds) * 1000:.1f} ms, peak {int(peak_kb) >> 10} MB")


BAD_LAYOUTS = [
    ({"input_shape": [8], "layers": [{"type": "conv2d", "filters": 2, "stride": 0}]},
     "Conv2D stride must be 1..65536, not 0"),  # was a ZeroDivisionError
    ({"input_shape": [8], "layers": [{"type": "dense", "units": 1e400}]},
     "Dense units must be a whole number, not inf"),  # was an OverflowError
    ({"input_shape": [-3, 2], "layers": [{"type": "dense", "units": 2}]},
     "input_shape size must be 1..65536, not -3"),  # was 'math domain error'
    ({"input_shape": [8], "layers": [{"type": "dense", "units": {"a": [1]}}]},
     "Dense units must be a whole number"),
    ({"input_shape": [8, 8, 1], "layers": [{"type": "maxpool2d", "pool_size": 0}]},
     "MaxPool2D pool_size must be 1..65536, not 0"),
    ({"input_shape": [8], "layers": [{"type": "batchnorm", "eps": -1}]},
     "BatchNorm eps must lie in"),
    ({"input_shape": [8], "layers": [{"type": "dense", "units": 2, "init": "zeroes"}]},
     "unknown initialiser 'zeroes'"),
    ({"input_shape": [65536, 65536], "layers": []}, "values per sample"),
]  # fmt: skip


@pytest.mark.parametrize("layout,message", BAD_LAYOUTS)
def test_odd_layouts_are_one_line_errors_naming_the_file(tmp_path, layout, message):
    from arraynet.backends import get_backend
    from arraynet.io import load_model

    path = _declaring(tmp_path, layout)
    with pytest.raises(WeightsError) as e:
        load_model(path, get_backend("numpy"))
    text = str(e.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text, text


def test_deeply_nested_metadata_is_one_line(tmp_path):
    """JSON nested deeper than Python's parser recurses (was a RecursionError)."""
    from arraynet.backends import get_backend
    from arraynet.io import load_model

    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / "deep.safetensors"
    raw = '{"layout": ' + deep + "}"
    tensors = {"w": np.ones(1, np.float32)}
    header = {"arraynet": raw, "sha256": weights_io.checksum(tensors, raw)}
    path.write_bytes(st_save(tensors, metadata=header))
    for load in (load_arrays, lambda p: load_model(p, get_backend("numpy"))):
        with pytest.raises(WeightsError, match="not a readable safetensors file") as e:
            load(path)
        assert "\n" not in str(e.value)
