"""Bundle onnxruntime-web into the package: `npm pack` of a pinned version from the npm
registry, checked against its pinned SHA-512, and two files of it copied into
arraynet/serve/static/ort/ (the wasm-only ES module and its WebAssembly binary), so the
drawing page can run the exported model in the browser with no CDN.

    uv run python scripts/vendor_ort_web.py          # needs npm and the npm registry

A source checkout runs it once by hand, for the editable install (`uv sync`) to find the
files there; they are not in git (14 MB). The wheel build (hatch_build.py) takes that copy
when it is there, and otherwise calls `vendor(dest)` with a temporary folder of its own:
building a wheel writes nothing into the source tree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "onnxruntime-web"
VERSION = "1.30.0"
INTEGRITY = (  # the npm registry's dist.integrity of that version
    "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7"
    "svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
)
FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
DEST = Path(__file__).resolve().parents[1] / "arraynet" / "serve" / "static" / "ort"


def vendored(dest: Path = DEST) -> bool:
    """True when every bundled file is in place, of the pinned version."""
    notice = dest / "NOTICE.json"
    if not notice.is_file() or not all((dest / f).is_file() for f in FILES):
        return False
    try:
        return json.loads(notice.read_text())["version"] == VERSION
    except (ValueError, KeyError):
        return False


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def vendor(dest: Path = DEST) -> None:
    """Fetch the pinned tarball with npm, check it, and copy FILES into `dest`."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (it fetches onnxruntime-web)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
            check=True, stdout=subprocess.DEVNULL, timeout=600,
        )  # fmt: skip
        tgz = Path(tmp) / f"{PACKAGE}-{VERSION}.tgz"
        if _integrity(tgz) != INTEGRITY:
            raise RuntimeError(f"{tgz.name}: SHA-512 differs from the pinned one")
        with tarfile.open(tgz) as tar:
            for name in FILES:
                member = tar.getmember(f"package/dist/{name}")
                src = tar.extractfile(member)
                if not member.isfile() or src is None:
                    raise RuntimeError(f"{tgz.name}: package/dist/{name} is not a file")
                dest.mkdir(parents=True, exist_ok=True)
                part = dest / f".{name}.tmp"
                with open(part, "wb") as f:
                    shutil.copyfileobj(src, f)
                os.replace(part, dest / name)
    notice = {
        "package": PACKAGE, "version": VERSION, "license": "MIT",
        "source": f"https://www.npmjs.com/package/{PACKAGE}/v/{VERSION}",
        "tarball_integrity": INTEGRITY, "files": list(FILES),
    }  # fmt: skip
    (dest / "NOTICE.json").write_text(json.dumps(notice, indent=2) + "\n")


def main() -> None:
    if vendored():
        print(f"{DEST}: {PACKAGE} {VERSION} already bundled")
        return
    try:
        vendor()
    except (RuntimeError, OSError, subprocess.SubprocessError, KeyError, tarfile.TarError) as e:
        sys.stderr.write(f"vendor_ort_web: error: {e}\n")
        sys.exit(1)
    print(f"{DEST}: bundled {PACKAGE} {VERSION}")


if __name__ == "__main__":
    main()
