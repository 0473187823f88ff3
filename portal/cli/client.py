"""The runtime API over HTTP, for portal-cli: one session with the key, a
timeout on every call, and every failure (the portal unreachable, an answer
that is not the API's, an error status) turned into a ``CliError`` with
the API's own words and the exit code it means."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

import requests

from portal.cli.config import Config
from portal.cli.errors import CliError, exit_code_for

API_PATH = "/api/v1"
# Seconds to connect, and to wait for an answer (a check calls the provider).
TIMEOUT = (10, 60)
PAGE_SIZE = 200  # the API's largest page


def _user_agent() -> str:
    try:
        return f"portal-cli/{version('connections-portal')}"
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "portal-cli"


class PortalClient:
    def __init__(self, config: Config, *, session: requests.Session | None = None):
        self.url = config.url
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {config.api_key}",
                "Accept": "application/json",
                "User-Agent": _user_agent(),
            }
        )

    def get(self, path: str, params: dict | None = None, headers: dict | None = None):
        return self.call("GET", path, params=params, headers=headers)

    def post(self, path: str, body: dict | None = None):
        return self.call("POST", path, json=body or {})

    def call(self, method: str, path: str, **kwargs):
        """The JSON answer (None for an empty one), or a ``CliError``."""
        url = self.url + API_PATH + path
        try:
            response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.Timeout:
            raise CliError(f"{self.url} did not answer in time; try again.") from None
        except requests.exceptions.SSLError:
            raise CliError(f"Cannot reach {self.url}: its TLS certificate is not valid.") from None
        except requests.ConnectionError:
            raise CliError(f"Cannot reach {self.url}: is the address right and is it up?") from None
        except requests.RequestException as error:
            raise CliError(f"Cannot call {self.url}: {type(error).__name__}.") from None
        return self._answer(response)

    def _answer(self, response: requests.Response):
        if response.ok and (response.status_code == 204 or not response.content):
            return None
        kind = response.headers.get("Content-Type", "")
        try:
            answer = response.json() if kind.startswith("application/json") else None
        except ValueError:
            answer = None
        if answer is None and response.content:
            raise CliError(
                f"{self.url} did not answer as the portal's API (HTTP {response.status_code}, "
                f"{kind.split(';')[0] or 'no content type'}): is the address right?"
            )
        if response.ok:
            return answer
        detail = answer.get("detail") if isinstance(answer, dict) else None
        message = detail if isinstance(detail, str) and detail else response.reason
        raise CliError(
            f"{message} (HTTP {response.status_code})", exit_code_for(response.status_code)
        )

    def pages(self, path: str, params: dict | None = None) -> Iterator[dict]:
        """Every item of a paginated list, a page at a time."""
        page = 1
        while True:
            answer = self.get(path, {**(params or {}), "page": page, "page_size": PAGE_SIZE})
            yield from answer["items"]
            if page >= answer["pages"]:
                return
            page += 1
