"""In-process access to moto's S3 backend: what the emulated HealthImaging reads and writes, plus a disk dump.

The emulator plays a service that reads S3 from inside AWS, so it goes straight to moto's models instead of
making signed HTTP calls to itself. Objects are read through a bounded file-like view so a hostile 1 GB object
is never loaded into memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moto.s3.models import s3_backends

# moto's default account: what it answers for any access key that no IAM user of moto owns.
ACCOUNT_ID = "123456789012"


class NoSuchBucket(LookupError):
    pass


def backend() -> Any:
    return s3_backends[ACCOUNT_ID]["aws"]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix


def _bucket(name: str) -> Any:
    found = backend().buckets.get(name)
    if found is None:
        raise NoSuchBucket(name)
    return found


def bucket_exists(name: str) -> bool:
    return name in backend().buckets


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def list_objects(bucket: str, prefix: str) -> list[ObjectInfo]:
    found = _bucket(bucket)
    objects = []
    # Snapshot the key names first: moto's key store is a dict that HTTP PUTs may grow meanwhile.
    for name in sorted(found.keys.keys()):
        if not name.startswith(prefix):
            continue
        key = found.keys.get(name)
        if key is None or not hasattr(key, "size"):
            continue  # a delete marker in a versioned bucket
        objects.append(ObjectInfo(name, int(key.size)))
    return objects


class ObjectReader(io.RawIOBase):
    """A seekable read-only view of one moto object that copies only the bytes asked for."""

    def __init__(self, key: Any) -> None:
        self._key = key
        self._pos = 0
        self._size = int(key.size)

    @property
    def name(self) -> str:
        # pydicom records the source's name on the dataset it returns.
        return str(self._key.name)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        # moto keeps the bytes in a SpooledTemporaryFile guarded by the key's lock; its public `value`
        # property would copy the whole object on every call.
        with self._key.lock:
            self._key._value_buffer.seek(self._pos)
            data = self._key._value_buffer.read(len(view))
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def open_object(bucket: str, key: str) -> io.BufferedReader | None:
    found = _bucket(bucket).keys.get(key)
    if found is None or not hasattr(found, "size"):
        return None
    return io.BufferedReader(ObjectReader(found), buffer_size=64 * 1024)


def object_size(bucket: str, key: str) -> int | None:
    found = _bucket(bucket).keys.get(key) if bucket_exists(bucket) else None
    return int(found.size) if found is not None and hasattr(found, "size") else None


def object_etag(bucket: str, key: str) -> str | None:
    """The object's ETag without quotes, or None when it is missing."""
    found = _bucket(bucket).keys.get(key) if bucket_exists(bucket) else None
    if found is None or not hasattr(found, "etag"):
        return None
    return str(found.etag).strip('"')


def read_capped(bucket: str, key: str, limit: int) -> bytes | None:
    """The object's bytes, or None when it is missing; raises ValueError when it is larger than limit."""
    size = object_size(bucket, key)
    if size is None:
        return None
    if size > limit:
        raise ValueError(f"{size} bytes, more than the {limit} allowed")
    reader = open_object(bucket, key)
    return reader.read(limit + 1) if reader is not None else None


def put_object(
    bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream"
) -> None:
    stored = backend().put_object(bucket, key, body)
    stored.set_metadata({"Content-Type": content_type})


# ---- persistence ---------------------------------------------------------------------------------------------
# moto has no persistence of its own. The dump is incremental: one file per object named by the hash of
# bucket and key (S3 keys can be longer than a file name and hold any character), plus an index.


def _object_file(root: Path, bucket: str, key: str) -> Path:
    digest = hashlib.sha256(f"{bucket}\0{key}".encode()).hexdigest()
    return root / "objects" / digest[:2] / digest


def dump(root: Path, previous: dict[str, str]) -> dict[str, str]:
    """Write changed objects under root and return the new {file name: etag} map for the next call."""
    root.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"buckets": []}
    current: dict[str, str] = {}
    for name, bucket in list(backend().buckets.items()):
        entry: dict[str, Any] = {
            "name": name,
            "region": bucket.region_name,
            "objects": [],
        }
        for key_name in list(bucket.keys.keys()):
            key = bucket.keys.get(key_name)
            if key is None or not hasattr(key, "size"):
                continue
            path = _object_file(root, name, key_name)
            etag = key.etag
            current[path.name] = etag
            if previous.get(path.name) != etag or not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(key.value)
                os.replace(tmp, path)
            content_type = key.metadata.get("Content-Type", "binary/octet-stream")
            entry["objects"].append(
                {"key": key_name, "file": path.name, "contentType": content_type}
            )
        index["buckets"].append(entry)
    for gone in set(previous) - set(current):
        (root / "objects" / gone[:2] / gone).unlink(missing_ok=True)
    tmp_index = root / "index.json.tmp"
    tmp_index.write_text(json.dumps(index))
    os.replace(tmp_index, root / "index.json")
    return current


def load(root: Path) -> dict[str, str]:
    index_file = root / "index.json"
    if not index_file.exists():
        return {}
    index = json.loads(index_file.read_text())
    loaded: dict[str, str] = {}
    for entry in index["buckets"]:
        if not bucket_exists(entry["name"]):
            backend().create_bucket(entry["name"], entry.get("region") or "us-east-1")
        for obj in entry["objects"]:
            path = root / "objects" / obj["file"][:2] / obj["file"]
            if path.exists():
                put_object(
                    entry["name"], obj["key"], path.read_bytes(), obj["contentType"]
                )
                loaded[obj["file"]] = (
                    backend().buckets[entry["name"]].keys[obj["key"]].etag
                )
    return loaded


def reset() -> None:
    backend().reset()


def iter_prefix_folders(objects: list[ObjectInfo], prefix: str) -> Iterator[str]:
    seen: set[str] = set()
    for obj in objects:
        parts = obj.key[len(prefix) :].split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in seen:
                seen.add(folder)
                yield folder
