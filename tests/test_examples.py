"""The examples in examples/ run (at small sizes), and the README's Python example is
examples/quickstart.py, verbatim."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def run_example(name: str, *args: str, cwd, data_dir=None) -> str:
    env = dict(os.environ)
    if data_dir is not None:
        env["ARRAYNET_DATA"] = str(data_dir)
    p = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args, "--small"],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return p.stdout


def error_of(out: str) -> float:
    m = re.findall(r"test error ([\d.]+)%", out)
    assert m, out
    return float(m[-1]) / 100


def test_readme_python_example_is_the_quickstart_file():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n# examples/quickstart.py\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, "README needs one python block headed '# examples/quickstart.py'"
    assert blocks[0] == (EXAMPLES / "quickstart.py").read_text()


@pytest.mark.slow
def test_quickstart(tmp_path, data_dir):
    out = run_example("quickstart.py", cwd=tmp_path, data_dir=data_dir)
    assert error_of(out) < 0.5  # 500 images, 2 epochs; chance is 0.9
    assert (tmp_path / "quickstart.safetensors").is_file()
    assert "first five predictions:" in out


@pytest.mark.slow
def test_custom_cnn_on_a_32x32x3_npz_with_5_classes(tmp_path):
    out = run_example("custom_cnn_npz.py", cwd=tmp_path)
    assert "input_shape=(32, 32, 3)" in out and "num_classes=5" in out
    assert error_of(out) < 0.5  # chance is 0.8


@pytest.mark.slow
def test_finetune_a_zoo_model(tmp_path, data_dir):
    out = run_example("finetune_zoo.py", cwd=tmp_path, data_dir=data_dir)
    m = re.search(r"before ([\d.]+)%, after ([\d.]+)%", out)
    assert m and float(m.group(1)) < 3.0 and float(m.group(2)) < 5.0, out  # m9 ships at 0.8 %


@pytest.mark.slow
def test_custom_layer_passes_the_gradient_check_and_trains(tmp_path):
    out = run_example("custom_layer.py", cwd=tmp_path)
    assert "saved and reloaded: same error" in out and error_of(out) < 0.3


def test_the_gradient_check_catches_a_wrong_backward():
    """check_gradients can fail: a layer whose backward forgets a factor is caught."""
    from array_api_compat import array_namespace

    from arraynet.layers import Layer
    from arraynet.testing import check_gradients

    class Square(Layer):
        kind = "square-wrong"

        def forward(self, x, training=False):
            self._x = x
            return x * x

        def backward(self, dy):
            array_namespace(dy)
            return dy * self._x  # should be 2 * x * dy

    with pytest.raises(AssertionError, match="gradient of 'input' is off"):
        check_gradients(Square(), (4,))
