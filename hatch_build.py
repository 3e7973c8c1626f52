"""Wheel build hook: bundle onnxruntime-web into the wheel (scripts/vendor_ort_web.py), so
`arraynet serve` can offer its in-browser mode with no CDN. Editable installs (`uv sync`)
skip it; ARRAYNET_NO_ORT_WEB=1 builds a wheel without it, as does a machine without npm
(with a note; ARRAYNET_REQUIRE_ORT_WEB=1 makes that an error). Without it the page answers
only from the server."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class OrtWebBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        if os.environ.get("ARRAYNET_NO_ORT_WEB") == "1":
            return
        path = Path(self.root) / "scripts" / "vendor_ort_web.py"
        spec = importlib.util.spec_from_file_location("vendor_ort_web", path)
        assert spec is not None and spec.loader is not None
        vendor = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(vendor)
        if not vendor.vendored():
            try:
                vendor.vendor()
            except Exception as e:  # no npm or no registry: a wheel without the browser mode
                if os.environ.get("ARRAYNET_REQUIRE_ORT_WEB") == "1":
                    raise RuntimeError(f"bundling onnxruntime-web failed ({e})") from e
                print(f"arraynet: onnxruntime-web not bundled ({e}); the page will answer "
                      "from the server only", file=sys.stderr)  # fmt: skip
                return
        build_data["artifacts"].append("/arraynet/serve/static/ort/*")
