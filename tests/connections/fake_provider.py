"""A small provider API served over real HTTP in tests: answers like a SaaS
API does to a good, a wrong, or an under-privileged credential."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD_TOKEN = "ghp_good_token_value_1234567890"
WEAK_TOKEN = "ghp_weak_token_value_0987654321"
GOOD_API_KEY = "key-live-abcdefghijklmnop"
GOOD_BASIC = ("robot@example.com", "api-token-secret-42")


class FakeProvider:
    def __init__(self, address: str = "127.0.0.1", redirect_to: str = "") -> None:
        self.requests: list[tuple[str, dict]] = []
        # When set, /user answers to a good token say when it expires, as
        # GitHub does for fine-grained and expiring classic PATs.
        self.token_expiration: str = ""
        # When set, every request gets this status (e.g. 503: the provider is down).
        self.fail_with: int = 0
        # Headers of those answers (e.g. Retry-After with a 429).
        self.fail_headers: dict[str, str] = {}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _answer(self, status: int, body: dict | list, headers: dict | None = None) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                provider.requests.append((self.path, dict(self.headers)))
                auth = self.headers.get("Authorization", "")
                if redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if provider.fail_with:
                    return self._answer(
                        provider.fail_with, {"message": "Try again later"}, provider.fail_headers
                    )
                if self.path == "/user":
                    basic = base64.b64encode(":".join(GOOD_BASIC).encode()).decode()
                    if auth == f"Bearer {GOOD_TOKEN}":
                        expiry = provider.token_expiration
                        return self._answer(
                            200,
                            {"login": "octo-robot", "id": 7},
                            {"github-authentication-token-expiration": expiry} if expiry else None,
                        )
                    if self.headers.get("X-API-Key") == GOOD_API_KEY:
                        return self._answer(200, {"login": "api-robot"})
                    if auth == f"Basic {basic}":
                        return self._answer(200, {"login": GOOD_BASIC[0]})
                    if auth == f"Bearer {WEAK_TOKEN}":
                        return self._answer(403, {"message": "Resource not accessible by token"})
                    token = auth.partition(" ")[2]
                    return self._answer(401, {"message": f"Bad credentials: {token} is invalid"})
                if self.path == "/accessible-resources":
                    if auth != f"Bearer {GOOD_TOKEN}":
                        return self._answer(401, {"message": "Unauthorized"})
                    return self._answer(
                        200,
                        [
                            {"id": "cloud-other", "url": "https://other.atlassian.net"},
                            {"id": "cloud-42", "url": "https://acme.atlassian.net"},
                        ],
                    )
                return self._answer(404, {"message": "Not Found"})

        self.handler = Handler
        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.port = self.server.server_address[1]
        host = "localhost" if address == "127.0.0.1" else address
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.running = False

    def __enter__(self) -> FakeProvider:
        self.thread.start()
        self.running = True
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering: connections to the port are refused (unreachable)."""
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.running = False

    def start_again(self) -> None:
        """Serve again on the same address and port after ``stop()``."""
        if not self.running:
            self.server = ThreadingHTTPServer(self.server.server_address, self.handler)
            self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
            self.thread.start()
            self.running = True


DEFINITION = """
key: fakehub
name: FakeHub
icon: connections/icons/github.svg
categories: [Testing]
description: A provider served by the test suite.
docs_url: https://example.com/docs
api_base_url: {base}
allowed_hosts: [localhost]
auth_types:
  - type: pat
    secrets:
      - key: token
        label: Personal access token
    send:
      scheme: bearer
  - type: api_key
    secrets:
      - key: api_key
        label: API key
    send:
      scheme: header
      header: X-API-Key
      value: "{{api_key}}"
  - type: basic
    fields:
      - key: email
        label: E-mail
        type: email
    secrets:
      - key: api_token
        label: API token
    send:
      scheme: basic
      username: "{{email}}"
      password: "{{api_token}}"
health_check:
  path: /user
  identity: login
"""
