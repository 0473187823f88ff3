"""A strict OAuth 2.0 token endpoint served over real HTTP in tests, as the
strictest providers behave: every refresh token is single use, and a used
one coming back revokes its whole grant (the token family), after which
nothing of that grant works. It answers after ``delay`` seconds, gives
access tokens ``lifetime`` seconds, and records every token request, so a
test can count the refreshes one expiry cost and see any reuse.

Served at ``/sandbox/oauth/token/``: pointing ``PORTAL_BASE_URL`` at it makes
the Sandbox connector's refreshes come here."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class Grant:
    refresh_tokens: set[str] = field(default_factory=set)
    revoked: bool = False


class StrictProvider:
    def __init__(self, *, lifetime: int, delay: float = 1.0) -> None:
        self.lifetime = lifetime
        self.delay = delay
        self.lock = threading.Lock()
        self.grants: list[Grant] = []
        self.used: set[str] = set()
        # Every token request: (when, the refresh token it spent, what it answered).
        self.requests: list[tuple[float, str, int]] = []
        self.reused: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StrictProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def issue(self, grant: Grant | None = None) -> dict:
        """A token set of a new grant (or of ``grant``), as a token answer."""
        with self.lock:
            if grant is None:
                grant = Grant()
                self.grants.append(grant)
            refresh_token = "rt-" + secrets.token_urlsafe(16)
            grant.refresh_tokens.add(refresh_token)
        return {
            "access_token": "at-" + secrets.token_urlsafe(16),
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "expires_in": self.lifetime,
        }

    def _refresh(self, refresh_token: str) -> tuple[int, dict]:
        with self.lock:
            grant = next((g for g in self.grants if refresh_token in g.refresh_tokens), None)
            if grant is None or grant.revoked:
                return 400, {"error": "invalid_grant", "error_description": "Unknown token."}
            if refresh_token in self.used:
                # Reuse: someone holds a copy of a spent token. Revoke the grant.
                self.reused.append(refresh_token)
                grant.revoked = True
                return 400, {"error": "invalid_grant", "error_description": "Token reused."}
            self.used.add(refresh_token)
        return 200, self.issue(grant)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                spent = form.get("refresh_token", [""])[0]
                time.sleep(provider.delay)
                if form.get("grant_type") == ["refresh_token"]:
                    status, body = provider._refresh(spent)
                else:
                    status, body = 400, {"error": "unsupported_grant_type"}
                with provider.lock:
                    provider.requests.append((time.monotonic(), spent, status))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
