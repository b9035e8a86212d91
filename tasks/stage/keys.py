"""Keys: stable fingerprints of what a row was computed from.

A row's `input_key` is `fingerprint(...)` of its upstream key, the model's content
hash and its settings; a rerun compares keys, never timestamps, to decide what is
still current.
"""

from __future__ import annotations

import functools
import hashlib
import json


def fingerprint(*parts: object) -> str:
    """Stable short hash of JSON-serialisable values (settings, upstream keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


@functools.lru_cache(maxsize=32)
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a local file; `size` and `mtime_ns` are part of the cache key, so
    a file changed on disk is hashed again."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
