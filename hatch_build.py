"""Wheel build hook: bundle onnxruntime-web into the wheel (scripts/vendor_ort_web.py), so
`arraynet serve` can offer its in-browser mode with no CDN. Editable installs (`uv sync`)
skip it; ARRAYNET_NO_ORT_WEB=1 builds a wheel without it, as does a machine without npm
(with a note; ARRAYNET_REQUIRE_ORT_WEB=1 makes that an error). Without it the page answers
only from the server.

The build writes nothing into the source tree: a copy already vendored there by hand
(arraynet/serve/static/ort/, for an editable install) is taken as it is; otherwise the files
are fetched into a temporary folder, removed when the wheel is written. Either way they go
into the wheel at arraynet/serve/static/ort/, where the installed package looks for them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

WHEEL_DIR = "arraynet/serve/static/ort"  # arraynet.serve.app.ORT_WEB, inside the wheel


class OrtWebBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"
    _tmp: str | None = None

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
        source = Path(self.root) / WHEEL_DIR
        if not vendor.vendored(source):
            self._tmp = tempfile.mkdtemp(prefix="arraynet-ort-web-")
            source = Path(self._tmp)
            try:
                vendor.vendor(source)
            except Exception as e:  # no npm or no registry: a wheel without the browser mode
                self.finalize(version, build_data, "")
                if os.environ.get("ARRAYNET_REQUIRE_ORT_WEB") == "1":
                    raise RuntimeError(f"bundling onnxruntime-web failed ({e})") from e
                print(f"arraynet: onnxruntime-web not bundled ({e}); the page will answer "
                      "from the server only", file=sys.stderr)  # fmt: skip
                return
        for name in (*vendor.FILES, "NOTICE.json"):
            build_data["force_include"][str(source / name)] = f"{WHEEL_DIR}/{name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
