"""The PyTorch twins used by the speed scripts have the zoo layouts' parameter counts."""

from __future__ import annotations

import sys

import pytest

from arraynet.backends import get_backend
from arraynet.zoo import LAYOUTS
from tests.conftest import HAVE_TORCH, REPO

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="torch is an optional extra")


@pytest.mark.parametrize("name", ["m1", "m8", "m12", "m13", "m14"])
def test_twin_matches_layout(name, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    sys.modules.pop("torch_twin", None)
    from torch_twin import torch_model

    twin = torch_model(name)
    ours = LAYOUTS[name]().build(get_backend("numpy"))
    assert sum(p.numel() for p in twin.parameters()) == ours.num_parameters()
