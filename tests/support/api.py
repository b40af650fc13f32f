"""JSON API test client that checks the envelope, trace id and OpenAPI shape of every response."""
from __future__ import annotations

from typing import Any


class ApiClient:
    """Test client that speaks JSON, carries a token/project and checks every response's shape."""

    def __init__(self, flask_client, checker, token: str | None = None, project_id: str | None = None):
        self.c = flask_client
        self.checker = checker
        self.token = token
        self.project_id = project_id

    def with_(self, token: str | None = None, project_id: str | None = None) -> "ApiClient":
        return ApiClient(self.c, self.checker, token if token is not None else self.token,
                         project_id if project_id is not None else self.project_id)

    def request(self, method: str, path: str, json: Any = None, headers: dict | None = None, **kw):
        h = dict(headers or {})
        if self.token and "Authorization" not in h:
            h["Authorization"] = f"Bearer {self.token}"
        if self.project_id and "X-Project-Id" not in h:
            h["X-Project-Id"] = self.project_id
        resp = self.c.open(path, method=method, json=json, headers=h, **kw)
        assert resp.headers.get("X-Trace-Id"), "every response carries X-Trace-Id"
        body = resp.get_json(silent=True)
        if resp.status_code >= 400 and path.startswith("/api"):
            assert body and set(body) == {"error"}, f"error without envelope: {resp.status_code} {resp.data[:200]!r}"
            err = body["error"]
            assert err["code"] and err["human_title"] and isinstance(err["human_how_to_fix"], list)
            assert err["details"]["trace_id"] == resp.headers["X-Trace-Id"]
        if body is not None:
            self.checker.check(method, path, resp.status_code, body)
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json=json if json is not None else {}, **kw)

    def patch(self, path, json=None, **kw):
        return self.request("PATCH", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def login(api: ApiClient, email: str, password: str) -> dict:
    resp = api.post("/api/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()
