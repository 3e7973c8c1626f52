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


def test_files_without_a_checksum_load_with_one_note(tmp_path, capsys):
    arrays = {"w": np.ones((2, 2), dtype=np.float32)}
    old = tmp_path / "old.safetensors"  # as arraynet wrote files before the checksum
    old.write_bytes(st_save(arrays, metadata={"arraynet": json.dumps({"epoch": 3})}))
    quiet = tmp_path / "quiet.safetensors"
    shutil.copy(old, quiet)
    for _ in range(3):
        got, meta = load_arrays(old)
        assert meta == {"epoch": 3} and np.array_equal(got["w"], arrays["w"])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(old) in err[0] and "carries no checksum" in err[0]
    load_arrays(quiet, note_unverified=False)
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
