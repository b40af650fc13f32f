"""An S3-compatible server for tests: moto's standalone server on a free 127.0.0.1 port, over real HTTP.

The platform talks to it exactly as to MinIO or another S3 store (boto3 with ``endpoint_url``), so the
requests, signatures, status codes and error bodies are the ones of the S3 protocol, not a Python mock.
"""
from __future__ import annotations

import json
import urllib.request
import uuid
from dataclasses import replace

from core.config import Settings

ACCESS_KEY = "voiceai-test-access"
SECRET_KEY = "voiceai-test-secret"
REGION = "us-east-1"


class FakeS3:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url = ""

    def start(self) -> "FakeS3":
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):  # type: ignore[no-untyped-def]
        """A boto3 client of its own (not the platform's), for arranging and inspecting the bucket."""
        import boto3
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name=REGION,
                                              aws_access_key_id=access_key, aws_secret_access_key=secret_key)

    def create_bucket(self, name: str | None = None) -> str:
        name = name or "voiceai-" + uuid.uuid4().hex[:12]
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, base: Settings, bucket: str) -> Settings:
        """``base`` switched to the S3 backend on this server."""
        return replace(base, storage_backend="s3", s3_endpoint_url=self.endpoint_url, s3_bucket=bucket,
                       s3_access_key=ACCESS_KEY, s3_secret_key=SECRET_KEY, s3_region=REGION)

    def require_auth(self, enabled: bool) -> None:
        """Make the server check signatures against its IAM users (none exist, so every key is refused)."""
        self._post("/moto-api/reset-auth", b"0" if enabled else b"inf")

    def _post(self, path: str, data: bytes) -> dict:
        req = urllib.request.Request(self.endpoint_url + path, data=data, method="POST",
                                     headers={"Content-Type": "text/plain"})  # not a form: moto reads the raw body
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")
