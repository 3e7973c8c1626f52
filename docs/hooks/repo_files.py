"""MkDocs hook: publish the repository's measurement files with the site.

The benchmark and zoo pages link to the files their figures come from:
`benchmarks/*.json`, `benchmarks/gpu/*`, `benchmarks/data-parallel.md` (a page of its own)
and the shipped models' records `models/*.json`. They live outside `docs/`, so this hook
adds them to the site under the same paths: a link such as `cpu-vs-torch.json` in
`benchmarks/README.md` (included into `docs/benchmarks/index.md`) then works on GitHub and
on the site alike, and `mkdocs build --strict` fails on one that points nowhere.
`benchmarks/README.md` itself is not added: `docs/benchmarks/index.md` includes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (folder in the repository, glob, files left out)
PUBLISHED = [
    ("benchmarks", "**/*", {"README.md"}),
    ("models", "*.json", set()),
]


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    root = Path(config["config_file_path"]).resolve().parent
    for folder, pattern, left_out in PUBLISHED:
        base = root / folder
        for path in sorted(base.glob(pattern)):
            rel = path.relative_to(base).as_posix()
            if not path.is_file() or rel in left_out or path.name.startswith("."):
                continue
            uri = f"{folder}/{rel}"
            if files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
