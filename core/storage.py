"""Object storage for recordings and documents: a local directory by default, S3-compatible via boto3.

Keys look like ``recordings/<project_id>/<yyyy>/<mm>/<call_id>.wav``; every key starts with a
kind and the owning project, and the API only serves keys it looked up from a row the caller may
read, so storage itself needs no ACLs.
"""
from __future__ import annotations

import os
import shutil
import stat
import threading
import uuid
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
        # A unique temporary name: two writers of one key (RECORD_STOP and hangup) must not share it.
        tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.part")
        try:
            with open(local_path, "rb") as src, open(tmp, "xb") as out:
                shutil.copyfileobj(src, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return dest.stat().st_size

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def size(self, key: str) -> int | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

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
        except ClientError as exc:
            # Only "no such object" means missing; access denied, a missing bucket etc. must surface.
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=_safe_key(key))

    def iter_chunks(self, key: str, chunk: int = 65536) -> Iterator[bytes]:
        body = self.open(key)
        try:
            while data := body.read(chunk):
                yield data
        finally:
            body.close()


_s3_clients: dict[tuple, object] = {}
_s3_clients_lock = threading.Lock()


def _s3_client(settings: Settings):  # type: ignore[no-untyped-def]
    """One boto3 client per endpoint and credentials, shared by the process.

    ``boto3.client()`` goes through boto3's default session, which is not safe to use from several
    threads at once (the web server makes a storage per request); clients themselves are
    thread-safe, so they are built under a lock from a private session and reused.
    """
    ident = (settings.s3_endpoint_url, settings.s3_access_key, settings.s3_secret_key, settings.s3_region)
    with _s3_clients_lock:
        client = _s3_clients.get(ident)
        if client is None:
            import boto3
            client = boto3.session.Session().client(
                "s3", endpoint_url=settings.s3_endpoint_url or None,
                aws_access_key_id=settings.s3_access_key or None,
                aws_secret_access_key=settings.s3_secret_key or None,
                region_name=settings.s3_region)
            _s3_clients[ident] = client
        return client


def make_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        return S3Storage(settings.s3_bucket, _s3_client(settings))
    if settings.storage_backend != "local":
        raise ValueError(f"VOICEAI_STORAGE_BACKEND must be 'local' or 's3', not {settings.storage_backend!r}")
    return LocalStorage(settings.storage_dir)
