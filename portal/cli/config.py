"""Where portal-cli finds the portal and its API key: ``PORTAL_URL`` and
``PORTAL_API_KEY`` from the environment, each overriding what ``portal-cli
login`` saved in the user's config directory (``config.json`` under
platformdirs' user config dir: ``$XDG_CONFIG_HOME/portal-cli`` or
``~/.config/portal-cli`` on Linux). The file holds a secret: it is written
owner-only (0600, its folder 0700), replaced atomically."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from platformdirs import user_config_dir

from portal.cli.errors import CliError, ExitCode

APP_NAME = "portal-cli"
URL_VARIABLE = "PORTAL_URL"
KEY_VARIABLE = "PORTAL_API_KEY"


@dataclass(frozen=True)
class Config:
    url: str
    api_key: str


def config_path() -> Path:
    return Path(user_config_dir(APP_NAME, appauthor=False)) / "config.json"


def clean_url(url: str) -> str:
    """The portal's address as typed, checked: http(s), a host, no trailing slash."""
    url = (url or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(
            f"{url or 'An empty URL'} is not the portal's address: give one like "
            "https://portal.example.com",
            ExitCode.USAGE,
        )
    return url


def _saved() -> dict:
    path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise CliError(f"Cannot read {path}: {error.strerror}.") from None
    try:
        saved = json.loads(text)
    except ValueError:
        raise CliError(f"{path} is not valid JSON: run portal-cli login again.") from None
    return saved if isinstance(saved, dict) else {}


def load() -> Config:
    """The portal and key to use, or a refusal saying how to sign in."""
    saved = _saved()
    url = os.environ.get(URL_VARIABLE) or saved.get("url") or ""
    api_key = os.environ.get(KEY_VARIABLE) or saved.get("api_key") or ""
    if not url or not api_key:
        raise CliError(
            "Not signed in: run portal-cli login --url URL, or set PORTAL_URL and PORTAL_API_KEY.",
            ExitCode.REFUSED,
        )
    return Config(url=clean_url(url), api_key=api_key.strip())


def save(config: Config) -> Path:
    """Write the config owner-only, replacing any earlier one in one step."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            # The mode given to open() is narrowed by the umask, never widened;
            # set it exactly in case the file was there already.
            os.fchmod(handle.fileno(), stat.S_IRUSR | stat.S_IWUSR)
            json.dump({"url": config.url, "api_key": config.api_key}, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def forget() -> bool:
    """Remove the saved config; whether there was one."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True
