"""Object storage for recordings and documents: a local directory by default, S3-compatible via boto3.

Keys look like ``recordings/<project_id>/<yyyy>/<mm>/<call_id>.wav``; every key starts with a
kind and the owning project, and the API only serves keys it looked up from a row the caller may
read, so storage itself needs no ACLs.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

from core.config import Settings


class Storage(Protocol):
    def put_file(self, key: str, local_path: str) -> int: ...
    def open(self, key: str) -> BinaryIO: ...
    def size(self, key: str) -> int | None: ...
    def delete(self, key: str) -> None: ...
    def iter_chunks(self, key: str, chunk: int = 65536) -> Iterator[bytes]: ...


def _safe_key(key: str) -> str:
    parts = [p for p in key.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"bad storage key {key!r}")
    return "/".join(parts)


class LocalStorage:
    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def put_file(self, key: str, local_path: str) -> int:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, dest)
        return dest.stat().st_size

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def size(self, key: str) -> int | None:
        p = self._path(key)
        return p.stat().st_size if p.exists() else None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def iter_chunks(self, key: str, chunk: int = 65536) -> Iterator[bytes]:
        with self.open(key) as fh:
            while data := fh.read(chunk):
                yield data


class S3Storage:
    def __init__(self, bucket: str, client) -> None:  # type: ignore[no-untyped-def]
        self.bucket = bucket
        self.client = client

    def put_file(self, key: str, local_path: str) -> int:
        key = _safe_key(key)
        self.client.upload_file(local_path, self.bucket, key)
        return os.path.getsize(local_path)

    def open(self, key: str) -> BinaryIO:
        return self.client.get_object(Bucket=self.bucket, Key=_safe_key(key))["Body"]

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=_safe_key(key))["ContentLength"])
        except ClientError:
            return None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=_safe_key(key))

    def iter_chunks(self, key: str, chunk: int = 65536) -> Iterator[bytes]:
        body = self.open(key)
        try:
            while data := body.read(chunk):
                yield data
        finally:
            body.close()


def make_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        import boto3
        client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None,
                              aws_access_key_id=settings.s3_access_key or None,
                              aws_secret_access_key=settings.s3_secret_key or None,
                              region_name=settings.s3_region)
        return S3Storage(settings.s3_bucket, client)
    if settings.storage_backend != "local":
        raise ValueError(f"VOICEAI_STORAGE_BACKEND must be 'local' or 's3', not {settings.storage_backend!r}")
    return LocalStorage(settings.storage_dir)
