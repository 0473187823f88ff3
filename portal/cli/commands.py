"""portal-cli's commands. Each one reads or asks the runtime API (with the
key ``login`` saved, or ``PORTAL_URL`` / ``PORTAL_API_KEY``) and prints a
table, or JSON with ``--json``. docs/cli.md describes them."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from portal.cli import config, names, output
from portal.cli.client import PortalClient
from portal.cli.errors import CliError, ExitCode, PortalGroup

app = typer.Typer(
    cls=PortalGroup,
    name="portal-cli",
    help="The Connections portal from a terminal or a script: folders, connections, "
    "health checks and credentials, through the portal's API.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NoBrowser = Annotated[
    bool, typer.Option("--no-browser", help="Only print the address, do not open a browser.")
]
ConnectionArg = Annotated[
    str,
    typer.Argument(
        metavar="CONNECTION",
        help="An id, FOLDER/NAME, or a name only one connection you can see has.",
    ),
]
FolderArg = Annotated[
    str,
    typer.Argument(
        metavar="FOLDER",
        help="An id, a path (Shared/Finance), a name only one folder has, or ~ (yours).",
    ),
]
HEALTHY = "connected"


def _client() -> PortalClient:
    return PortalClient(config.load())


def _page_url(client: PortalClient, connection: dict) -> str:
    return f"{client.url}/folders/{connection['folder_id']}/connections/{connection['id']}/"


def _status(connection: dict) -> str:
    return connection["state_label"] + ("" if connection["is_enabled"] else " (disabled)")


def _show_address(url: str, *, no_browser: bool, what: str) -> None:
    output.say(url)
    if not no_browser and output.open_in_browser(url):
        output.warn(f"Opened {what} in your browser.")


@app.command()
def login(
    url: Annotated[
        str,
        typer.Option(
            "--url", envvar=config.URL_VARIABLE, help="The portal's address.", show_default=False
        ),
    ],
) -> None:
    """Save the portal's address and an API key (asked for, hidden), once the
    portal has accepted the key. PORTAL_URL and PORTAL_API_KEY override them."""
    url = config.clean_url(url)
    api_key = typer.prompt("API key", hide_input=True).strip()
    if not api_key:
        raise CliError("No API key given.", ExitCode.USAGE)
    saved = config.Config(url=url, api_key=api_key)
    try:
        me = PortalClient(saved).get("/me")
    except CliError as refused:
        if refused.code == ExitCode.REFUSED:
            raise CliError(f"{url} refused this key: {refused}", ExitCode.REFUSED) from None
        raise
    path = config.save(saved)
    who = f"{me['user']} (robot)" if me["robot"] else me["user"]
    output.say(f"Signed in to {url} as {who}, key {me['api_key']}.")
    output.say(f"Saved in {path}, readable by you only.")


@app.command()
def logout() -> None:
    """Forget the saved address and key."""
    if config.forget():
        output.say(f"Removed {config.config_path()}.")
    else:
        output.say("Nothing saved: not signed in.")


@app.command()
def folders(as_json: AsJson = False) -> None:
    """The folders you can see."""
    found = sorted(names.Folders.read(_client()).by_id.values(), key=lambda f: f["path"].casefold())
    if as_json:
        return output.print_json(found)
    output.print_table(
        ("ID", "FOLDER", "KIND"),
        ((f["id"], f["path"], f["kind"]) for f in found),
        empty="No folders you can see.",
    )


@app.command()
def connections(
    folder: Annotated[
        str | None,
        typer.Argument(
            metavar="[FOLDER]",
            help="Only this folder (an id, a path, a name or ~).",
            show_default=False,
        ),
    ] = None,
    connector: Annotated[str | None, typer.Option(help="Only this connector, e.g. github.")] = None,
    state: Annotated[
        str | None, typer.Option(help="Only this state, e.g. connected or needs_reconnect.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Connections, with their status, connector and account: in one folder,
    or in every folder you can see."""
    client = _client()
    known = names.Folders.read(client)
    filters = {"connector": connector, "state": state}
    if folder is None:
        found = names.all_connections(client, known, **filters)
    else:
        found = names.connections_in(client, known.get(folder)["id"], **filters)
    found.sort(key=lambda c: (known.path(c["folder_id"]).casefold(), c["name"].casefold()))
    if as_json:
        return output.print_json([{**c, "folder_path": known.path(c["folder_id"])} for c in found])
    output.print_table(
        ("ID", "FOLDER", "NAME", "CONNECTOR", "STATUS", "ACCOUNT"),
        (
            (
                c["id"],
                known.path(c["folder_id"]),
                c["name"],
                c["connector"],
                _status(c),
                c["account_identity"],
            )
            for c in found
        ),
        empty="No connections.",
    )


@app.command()
def show(connection: ConnectionArg, as_json: AsJson = False) -> None:
    """One connection's details (never its secret)."""
    client = _client()
    known = names.Folders.read(client)
    found = names.connection(client, connection, known)
    found = {**found, "folder_path": known.path(found["folder_id"])}
    found["page_url"] = _page_url(client, found)
    if as_json:
        return output.print_json(found)
    fields = ", ".join(f"{key}={value}" for key, value in found["fields"].items())
    output.print_fields(
        [
            ("ID", found["id"]),
            ("Name", found["name"]),
            ("Folder", found["folder_path"]),
            ("Connector", found["connector"]),
            ("Auth type", found["auth_type"]),
            ("Status", _status(found)),
            ("Default", "yes" if found["is_default"] else "no"),
            ("Account", found["account_identity"]),
            ("Authenticated by", found["authenticated_by"] or "System"),
            ("Description", found["description"]),
            ("Fields", fields),
            ("Check every", f"{found['polling_interval_seconds']} s"),
            ("Token expires", found["token_expires_at"]),
            ("Last checked", found["last_checked_at"]),
            ("Last success", found["last_success_at"]),
            ("Last error", found["last_error"]),
            ("Warning", found["warning"]),
            ("Page", found["page_url"]),
        ]
    )


@app.command()
def check(connection: ConnectionArg, as_json: AsJson = False) -> None:
    """Run a health check now. Exits 5 when it fails or the connection is not healthy."""
    client = _client()
    found = names.connection(client, connection)
    result = client.post(f"/connections/{found['id']}/check")
    healthy = result["ok"] and result["state"] == HEALTHY
    if as_json:
        output.print_json({"connection_id": found["id"], "name": found["name"], **result})
    else:
        how = (
            f"HTTP {result['status_code']} in {result['latency_ms']} ms"
            if result["status_code"] is not None
            else "no answer"
        )
        output.say(f"{found['name']}: {result['state_label']} ({how})")
        if result["error"]:
            output.say(result["error"])
    if not healthy:
        raise typer.Exit(ExitCode.UNHEALTHY)


@app.command()
def credentials(
    connection: ConnectionArg,
    secret: Annotated[
        str | None,
        typer.Option(
            metavar="KEY", help="Print only this value of the secret, e.g. access_token or token."
        ),
    ] = None,
    job_id: Annotated[
        str | None, typer.Option(help="The job's id, written in the audit log with the read.")
    ] = None,
) -> None:
    """Working credentials, as JSON, for scripts (every read is audited)."""
    client = _client()
    found = names.connection(client, connection)
    headers = {"X-Job-Id": job_id} if job_id else None
    answer = client.get(f"/connections/{found['id']}/credentials", headers=headers)
    if output.is_terminal():
        output.warn(
            "warning: this prints a secret to your terminal; it is meant for scripts "
            "(pipe it, or use --secret KEY in a command substitution)."
        )
    if secret is None:
        return output.print_json(answer)
    if secret not in answer["secret"]:
        offered = ", ".join(sorted(answer["secret"])) or "none"
        raise CliError(f"The secret has no {secret!r}; it has: {offered}.", ExitCode.USAGE)
    output.say(answer["secret"][secret])


@app.command("open")
def open_page(connection: ConnectionArg, no_browser: NoBrowser = False) -> None:
    """Configure in browser: print the connection's page and open it."""
    client = _client()
    found = names.connection(client, connection)
    _show_address(_page_url(client, found), no_browser=no_browser, what=found["name"])


@app.command()
def add(
    folder: FolderArg,
    connector: Annotated[str, typer.Argument(help="The connector's key, e.g. github.")],
    no_browser: NoBrowser = False,
) -> None:
    """Print and open the add-connection wizard with the folder and connector chosen."""
    client = _client()
    portal = client.get("/settings")
    if portal["read_only"]:
        raise CliError(
            "This portal is in read-only mode: connections are managed in the portal's pages, "
            f"not through the API or portal-cli. Go to {portal['portal_url']}",
            ExitCode.REFUSED,
        )
    chosen = names.Folders.read(client).get(folder)
    url = (
        f"{client.url}/folders/{chosen['id']}/connections/add/{quote(connector.strip(), safe='')}/"
    )
    _show_address(url, no_browser=no_browser, what="the add-connection wizard")
