"""After the token exchange, values the API base needs are looked up with the
new token (Atlassian's cloud id of the chosen site) over the guarded client."""

import pytest

from connections import oauth
from connections.catalog import get_catalog
from tests.connections.fake_provider import GOOD_TOKEN

LOOKUP = """
key: lookuphub
name: LookupHub
icon: connections/icons/jira.svg
categories: [Testing]
description: A provider whose API base needs a cloud id.
docs_url: https://example.com/docs
api_base_url: "{base}/ex/{{cloud_id}}"
allowed_hosts: [localhost, "*.atlassian.net"]
fields:
  - key: site_url
    label: Site URL
    type: url
    allowed_hosts: ["*.atlassian.net"]
auth_types:
  - type: oauth2_authorization_code
    oauth2:
      authorize_url: https://auth.example.com/authorize
      token_url: https://auth.example.com/oauth/token
      resource_lookup:
        url: {base}/accessible-resources
        match:
          url: "{{site_url}}"
        store:
          cloud_id: id
health_check:
  path: /user
"""


@pytest.fixture
def lookuphub(provider, tmp_path, settings):
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "lookuphub.yaml").write_text(LOOKUP.format(base=provider.url))
    settings.PORTAL_CONNECTORS_DIRS = [str(folder)]
    settings.PORTAL_EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    get_catalog.cache_clear()
    connector = get_catalog().get("lookuphub")
    yield connector, connector.auth_type("oauth2_authorization_code")
    get_catalog.cache_clear()


def test_lookup_finds_the_site(db, lookuphub, provider):
    connector, auth = lookuphub
    found = oauth._look_up_resource(
        connector, auth, {"site_url": "https://acme.atlassian.net"}, GOOD_TOKEN
    )
    assert found == {"cloud_id": "cloud-42"}
    assert provider.requests[-1][1]["Authorization"] == f"Bearer {GOOD_TOKEN}"


def test_lookup_without_the_site_is_a_clear_error(db, lookuphub):
    connector, auth = lookuphub
    with pytest.raises(oauth.OAuthFlowError, match="did not list the site"):
        oauth._look_up_resource(
            connector, auth, {"site_url": "https://missing.atlassian.net"}, GOOD_TOKEN
        )
