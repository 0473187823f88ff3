"""Print the outbound hosts the enabled connectors talk to (firewall allow list)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from connections.catalog import ConnectorSpec, get_catalog

WILDCARD_NOTE = (
    "Note: {patterns} stand for each tenant's own host (for example *.atlassian.net for "
    "your-site.atlassian.net): allow the actual hosts your connections use, or the pattern "
    "itself if your firewall takes wildcard domains."
)
ANY_HOST_NOTE = (
    "Note: * (connector {connectors}) means any public host: the connection's own base "
    "URL. Allow the hosts your users enter, or remove the connector."
)


def connector_hosts(connector: ConnectorSpec) -> list[str]:
    """The connector's egress hosts; a sandbox connector calls this portal itself."""
    hosts = set(connector.egress_hosts())
    if connector.sandbox:
        own = urlsplit(settings.PORTAL_BASE_URL).hostname
        if own:
            hosts.add(own)
    return sorted(hosts)


class Command(BaseCommand):
    help = (
        "Print every outbound host the enabled connectors call (API, token, revocation and "
        "lookup endpoints), one per line, sorted, for the firewall allow list. Patterns such "
        "as *.atlassian.net are printed as they are; notes about them go to standard error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--by-connector",
            action="store_true",
            help="List each connector (key and name) with the hosts it needs.",
        )

    def handle(self, *args, by_connector: bool = False, **options) -> None:
        connectors = sorted(get_catalog().connectors.values(), key=lambda c: c.key)
        per_connector = {c.key: connector_hosts(c) for c in connectors}
        if by_connector:
            for connector in connectors:
                self.stdout.write(f"{connector.key} ({connector.name})")
                for host in per_connector[connector.key]:
                    self.stdout.write(f"  {host}")
        else:
            hosts = sorted({h for hosts in per_connector.values() for h in hosts})
            for host in hosts:
                self.stdout.write(host)

        wildcards = sorted(
            {h for hosts in per_connector.values() for h in hosts if h.startswith("*.")}
        )
        if wildcards:
            self.stderr.write(WILDCARD_NOTE.format(patterns=", ".join(wildcards)))
        anywhere = [key for key, hosts in per_connector.items() if "*" in hosts]
        if anywhere:
            self.stderr.write(ANY_HOST_NOTE.format(connectors=", ".join(anywhere)))
