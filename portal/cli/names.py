"""Folders and connections named on the command line, found through the API.

- A folder: its id, its path from the top (``Shared/Finance``, any case),
  its name alone when only one folder has it, or ``~`` for your personal
  workspace.
- A connection: its id, ``FOLDER/NAME`` (a folder path or name as above,
  then the connection's name), or its name alone when only one connection
  you can see has it.

A name that matches several things is refused listing them (with their
ids), never a guess; one that matches nothing is "not found".
"""

from __future__ import annotations

from dataclasses import dataclass

from portal.cli.client import PortalClient
from portal.cli.errors import CliError, ExitCode

PERSONAL_WORKSPACE = "~"


@dataclass
class Folders:
    """Every folder the key may see (one paginated read), by id."""

    by_id: dict[int, dict]

    @classmethod
    def read(cls, client: PortalClient) -> Folders:
        return cls({folder["id"]: folder for folder in client.pages("/folders")})

    def path(self, folder_id: int) -> str:
        folder = self.by_id.get(folder_id)
        return folder["path"] if folder else str(folder_id)

    def find(self, text: str) -> dict | None:
        """The folder ``text`` names, None if none; several: refused."""
        text = text.strip()
        if text.isdigit():
            return self.by_id.get(int(text))
        if text == PERSONAL_WORKSPACE:
            return next((f for f in self.by_id.values() if f["kind"] == "personal"), None)
        wanted = text.strip("/").casefold()
        by_path = [f for f in self.by_id.values() if f["path"].casefold() == wanted]
        if by_path:
            return by_path[0]
        by_name = [f for f in self.by_id.values() if f["name"].casefold() == wanted]
        if len(by_name) > 1:
            raise ambiguous(f"folder {text!r}", [f"{f['path']} (id {f['id']})" for f in by_name])
        return by_name[0] if by_name else None

    def get(self, text: str) -> dict:
        folder = self.find(text)
        if folder is None:
            raise CliError(f"No folder {text!r} that you can see.", ExitCode.NOT_FOUND)
        return folder


def ambiguous(what: str, candidates: list[str]) -> CliError:
    return CliError(
        f"Several match {what}: {'; '.join(sorted(candidates))}. Give the id or the full path.",
        ExitCode.USAGE,
    )


def connections_in(client: PortalClient, folder_id: int, **filters) -> list[dict]:
    params = {key: value for key, value in filters.items() if value}
    return list(client.pages(f"/folders/{folder_id}/connections", params))


def all_connections(client: PortalClient, folders: Folders, **filters) -> list[dict]:
    """Connections in every folder the key may see and list connections in."""
    found = []
    for folder_id in folders.by_id:
        try:
            found.extend(connections_in(client, folder_id, **filters))
        except CliError as error:
            if error.code != ExitCode.REFUSED:  # a folder without Connections - View
                raise
    return found


def connection(client: PortalClient, text: str, folders: Folders | None = None) -> dict:
    """The connection ``text`` names (its details from the API)."""
    text = text.strip()
    if text.isdigit():
        return client.get(f"/connections/{int(text)}")
    folders = folders or Folders.read(client)
    folder_part, _, name = text.rpartition("/")
    if folder_part:
        folder = folders.find(folder_part)
        if folder is not None:
            return _named(connections_in(client, folder["id"]), name, text, folders)
    return _named(all_connections(client, folders), text, text, folders)


def _named(candidates: list[dict], name: str, text: str, folders: Folders) -> dict:
    wanted = name.strip().casefold()
    matches = [c for c in candidates if c["name"].casefold() == wanted]
    if not matches:
        raise CliError(f"No connection {text!r} that you can see.", ExitCode.NOT_FOUND)
    if len(matches) > 1:
        raise ambiguous(
            f"connection {text!r}",
            [f"{folders.path(c['folder_id'])}/{c['name']} (id {c['id']})" for c in matches],
        )
    return matches[0]
