"""Whole-model parity for every zoo layout across the CPU backends (host-RNG mode)."""

from __future__ import annotations

import pytest

from arraynet.parity import run_parity
from arraynet.zoo import LAYOUTS
from tests.conftest import CPU_BACKENDS


@pytest.mark.parametrize("name", [n for n in LAYOUTS if "-" not in n])  # mN-x: same layouts
def test_layout_parity(name, data_dir):
    res = run_parity(name, CPU_BACKENDS, batch_size=4, data_dir=str(data_dir))
    assert res["ok"], [r for r in res["rows"] if not r["ok"]]
    assert res["data"] == "mnist"
    # every parameter's gradient was compared on every other backend
    grads = {r["tensor"] for r in res["rows"] if r["tensor"].startswith("grad ")}
    from arraynet.backends import get_backend

    m = LAYOUTS[name]().build(get_backend("numpy"))
    assert grads == {f"grad {k}" for k in m.parameters()}


def test_parity_float64_is_tight(data_dir):
    res = run_parity("m12", CPU_BACKENDS, batch_size=4, dtype="float64", data_dir=str(data_dir))
    assert res["ok"] and res["max_abs_diff"] < 1e-10
