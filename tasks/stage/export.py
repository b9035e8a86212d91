"""Copy a finished run folder to any fsspec destination (object storage included).

A run is computed in a POSIX folder (atomic renames, `flock`); `export_run` then
mirrors its Parquet parts, stage records and report to a URI such as
`s3://bucket/runs/2026-11-21`, where pandas, pyarrow, DuckDB or Spark read them.

The copy is incremental and safe to rerun or interrupt:

* a file is uploaded only when its size or sha256 differs from what the last export
  recorded, so rerunning after a resumed run uploads only new or rewritten parts;
* object stores make each uploaded object appear whole or not at all, so a reader
  never sees half a part;
* files that no longer exist in the run (compaction drops parts) are deleted at the
  destination after the uploads;
* `_export.json` is written last: it lists every file of the snapshot with its
  sha256, so a reader can wait for it, or check what it read against it.

Hidden files (the lock, temporary parts) and `_corrupt/` quarantine folders are not
exported.
"""

from __future__ import annotations

import json
import posixpath
from datetime import UTC, datetime
from pathlib import Path

import fsspec

from tasks.stage.keys import file_sha256
from tasks.stage.parts import QUARANTINE_DIR

MANIFEST = "_export.json"


def run_files(run_dir: str | Path) -> list[str]:
    """Relative POSIX paths of the files of a run folder that an export copies."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"run folder {root} does not exist")
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or path.is_symlink():
            continue
        if any(p.startswith(".") or p == QUARANTINE_DIR for p in rel.parts):
            continue
        if rel.as_posix() == MANIFEST:
            continue
        out.append(rel.as_posix())
    return out


def _read_manifest(fs, root: str) -> dict:
    path = posixpath.join(root, MANIFEST)
    if not fs.exists(path):
        return {}
    with fs.open(path, "rb") as fh:
        return json.loads(fh.read().decode())


def export_run(run_dir: str | Path, dest: str, progress=None) -> dict:
    """Mirror `run_dir` to the fsspec URI `dest`; return what was done.

    `progress(rel_path)` is called after each upload (for a progress bar).
    Returns {"dest", "n_files", "uploaded", "unchanged", "deleted", "bytes"}.
    """
    root = Path(run_dir)
    fs, dest_root = fsspec.core.url_to_fs(dest)
    dest_root = dest_root.rstrip("/")
    previous = _read_manifest(fs, dest_root).get("files", {})
    files: dict[str, dict] = {}
    uploaded = unchanged = n_bytes = 0
    for rel in run_files(root):
        local = root / rel
        stat = local.stat()
        size = stat.st_size
        sha = file_sha256(str(local), size, stat.st_mtime_ns)
        files[rel] = {"size": size, "sha256": sha}
        target = posixpath.join(dest_root, rel)
        if previous.get(rel) == files[rel] and fs.exists(target):
            unchanged += 1
            continue
        fs.makedirs(posixpath.dirname(target), exist_ok=True)
        fs.put_file(str(local), target)
        if fs.size(target) != size:
            raise OSError(f"upload of {rel} to {target} is incomplete")
        uploaded += 1
        n_bytes += size
        if progress is not None:
            progress(rel)
    deleted = 0
    for rel in sorted(set(previous) - set(files)):
        target = posixpath.join(dest_root, rel)
        if fs.exists(target):
            fs.rm_file(target)
        deleted += 1
    manifest = {
        "source": str(root.resolve()),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": files,
    }
    fs.makedirs(dest_root, exist_ok=True)
    with fs.open(posixpath.join(dest_root, MANIFEST), "wb") as fh:
        fh.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
    return {
        "dest": dest,
        "n_files": len(files),
        "uploaded": uploaded,
        "unchanged": unchanged,
        "deleted": deleted,
        "bytes": n_bytes,
    }
