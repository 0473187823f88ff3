"""The connector catalog: shipped definitions, broken ones, extra folders, egress hosts."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command

from connections.catalog import (
    BUILTIN_DEFINITIONS,
    AuthKind,
    CatalogError,
    ConnectorSpec,
    FieldSpec,
    get_catalog,
    load_catalog,
)
from connections.catalog.schema import host_matches, lookup_path, render

STATIC = Path(settings.BASE_DIR) / "static"
SECRET_KINDS = {AuthKind.PAT, AuthKind.API_KEY, AuthKind.BASIC}

# A valid definition; the broken-definition tests each spoil one thing.
VALID = {
    "key": "acme",
    "name": "Acme",
    "icon": "connections/icons/generic_http.svg",
    "categories": ["Testing"],
    "description": "A test connector.",
    "docs_url": "https://docs.acme.example/auth",
    "api_base_url": "https://api.acme.example/v1",
    "allowed_hosts": ["api.acme.example"],
    "auth_types": [
        {
            "type": "pat",
            "secrets": [{"key": "token", "label": "Token"}],
            "send": {"scheme": "bearer"},
        }
    ],
    "health_check": {"method": "GET", "path": "/me", "identity": "login"},
}

# Values a user could type, per field key, for building URLs in the tests.
SAMPLE_VALUES = {
    "account_sid": "AC" + "0" * 32,
    "api_key_sid": "SK" + "0" * 32,
    "check_path": "/me",
    "header_name": "X-API-Key",
    "username": "robot",
    "tenant": "common",
}
# Values the OAuth 2.0 flow discovers.
DISCOVERED = {
    "instance_url": "https://acme.my.salesforce.com",
    "cloud_id": "11111111-2222-3333-4444-555555555555",
    "base_uri": "https://na3.docusign.net",
    "account_id": "123456",
}


def shipped() -> list[ConnectorSpec]:
    return [c for c in load_catalog([BUILTIN_DEFINITIONS], include_sandbox=True).all()]


def sample(field: FieldSpec) -> str:
    if field.key in SAMPLE_VALUES:
        return SAMPLE_VALUES[field.key]
    if field.type == "url":
        pattern = field.allowed_hosts[0]
        host = "api.example.com" if pattern == "*" else pattern.replace("*", "acme")
        return f"https://{host}"
    if field.type == "subdomain":
        return "acme"
    if field.type == "email":
        return "robot@example.com"
    if field.type == "choice":
        return field.choices[0][0]
    return field.default or "value"


def write(folder: Path, data: dict | str, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    key = data["key"] if isinstance(data, dict) else "acme"
    path = folder / f"{name or key}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def spoil(**changes) -> dict:
    data = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = data
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return data


def load_error(tmp_path: Path, data: dict | str, name: str | None = None) -> str:
    path = write(tmp_path, data, name)
    with pytest.raises(CatalogError) as caught:
        load_catalog([tmp_path], include_sandbox=False)
    message = str(caught.value)
    assert str(path) in message, message
    return message


# -- the shipped catalog ----------------------------------------------------------


def test_the_real_catalog_loads_at_start_up():
    catalog = get_catalog()
    assert catalog.get("github") is not None
    assert len(catalog.connectors) >= 20


def test_at_least_eight_real_pat_api_key_or_basic_connectors():
    secret_based = [
        c for c in shipped() if not c.sandbox and {a.type for a in c.auth_types} & SECRET_KINDS
    ]
    keys = {c.key for c in secret_based}
    assert len(secret_based) >= 8, keys
    expected = {"github", "gitlab", "jira", "confluence", "servicenow", "zendesk", "freshdesk"}
    assert expected | {"twilio", "generic_http"} <= keys


def test_the_oauth_connectors_of_the_next_issue_are_there():
    oauth = {c.key for c in shipped() if c.auth_type(AuthKind.OAUTH2_AUTHORIZATION_CODE)}
    assert {
        "salesforce",
        "microsoft_outlook",
        "microsoft_onedrive",
        "google_gmail",
        "google_drive",
        "google_sheets",
        "slack",
        "jira",
        "confluence",
        "servicenow",
        "zendesk",
        "hubspot",
        "github",
        "dropbox",
        "box",
        "docusign",
        "zoom",
        "asana",
    } <= oauth
    assert shipped_spec("servicenow").auth_type(AuthKind.OAUTH2_PASSWORD) is not None


def shipped_spec(key: str) -> ConnectorSpec:
    return next(c for c in shipped() if c.key == key)


@pytest.mark.parametrize("connector", shipped(), ids=lambda c: c.key)
def test_every_definition_is_complete(connector: ConnectorSpec):
    assert connector.key == connector.key.lower()
    assert (BUILTIN_DEFINITIONS / f"{connector.key}.yaml").is_file()
    assert str(connector.docs_url).startswith("https://")
    assert connector.description and connector.categories
    assert connector.health_check.path.startswith("/")
    icon = STATIC / connector.icon
    assert icon.is_file(), f"{connector.key}: icon {icon} is missing"
    for auth in connector.auth_types:
        if auth.oauth2:
            assert auth.oauth2.token_url.startswith(("https://", "{"))
            if auth.type == AuthKind.OAUTH2_AUTHORIZATION_CODE:
                assert auth.oauth2.authorize_url


@pytest.mark.parametrize("connector", shipped(), ids=lambda c: c.key)
def test_every_shipped_url_is_https(connector: ConnectorSpec):
    """Definitions may use http:// for an operator's own services; real providers never."""
    templates = [connector.api_base_url]
    for auth in connector.auth_types:
        templates.append(auth.api_base_url or "")
        templates.extend(connector.health_check_for(auth.type).templates().values())
        if auth.oauth2:
            templates.extend(auth.oauth2.url_templates().values())
            if auth.oauth2.resource_lookup:
                templates.append(auth.oauth2.resource_lookup.url)
    for template in templates:
        if template.startswith("http"):
            assert template.startswith("https://"), (connector.key, template)


@pytest.mark.parametrize("connector", shipped(), ids=lambda c: c.key)
def test_every_icon_is_a_small_self_contained_svg(connector: ConnectorSpec):
    icon = STATIC / connector.icon
    text = icon.read_text(encoding="utf-8")
    assert len(text) < 4000
    root = ET.fromstring(text)  # noqa: S314 - our own files
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox")
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        assert tag not in {"script", "foreignObject", "image", "use", "a", "style"}, icon
        for attribute in element.attrib:
            name = attribute.rsplit("}", 1)[-1].lower()
            assert not name.startswith("on"), (icon, attribute)
            assert name != "href", (icon, attribute)
    assert "url(" not in text and "javascript:" not in text


@pytest.mark.parametrize("connector", shipped(), ids=lambda c: c.key)
def test_every_auth_type_builds_a_health_check_url_within_its_allowed_hosts(connector):
    for auth in connector.auth_types:
        fields = connector.field_map(auth.type)
        values = {key: field.clean(sample(field)) for key, field in fields.items()}
        values |= {name: DISCOVERED[name] for name in auth.discovered_names()}
        url = connector.health_check_url(values, auth.type)
        parts = urlsplit(url)
        if connector.sandbox:
            assert url.startswith(settings.PORTAL_BASE_URL)
            continue
        assert parts.scheme == "https", url
        assert "{" not in url and "}" not in url, url
        assert any(host_matches(parts.hostname, p) for p in connector.request_hosts()), url
        base = connector.api_base(values, auth.type)
        assert any(host_matches(urlsplit(base).hostname, p) for p in connector.request_hosts())
        if auth.send:
            headers, params = auth.send.apply({**values, **{s.key: "s3cret" for s in auth.secrets}})
            assert headers or params


def test_health_check_urls_of_well_known_providers():
    values = {"account_sid": "AC" + "a" * 32}
    assert (
        shipped_spec("twilio").health_check_url(values, "basic")
        == f"https://api.twilio.com/2010-04-01/Accounts/AC{'a' * 32}.json"
    )
    jira = shipped_spec("jira")
    assert (
        jira.health_check_url({"site_url": "https://acme.atlassian.net"}, "basic")
        == "https://acme.atlassian.net/rest/api/3/myself"
    )
    assert (
        jira.health_check_url(
            {"site_url": "https://acme.atlassian.net", "cloud_id": "c1"},
            "oauth2_authorization_code",
        )
        == "https://api.atlassian.com/ex/jira/c1/rest/api/3/myself"
    )
    assert (
        shipped_spec("zendesk").health_check_url({"subdomain": "acme"}, "api_key")
        == "https://acme.zendesk.com/api/v2/users/me.json"
    )
    assert (
        shipped_spec("freshdesk").health_check_url({"subdomain": "acme"}, "api_key")
        == "https://acme.freshdesk.com/api/v2/agents/me"
    )
    confluence = shipped_spec("confluence")
    assert (
        confluence.health_check_url({"site_url": "https://acme.atlassian.net"}, "basic")
        == "https://acme.atlassian.net/wiki/rest/api/user/current"
    )
    pagerduty = shipped_spec("pagerduty")
    assert pagerduty.health_check_url({"api_host": "api.pagerduty.com"}, "pat").endswith(
        "/users/me"
    )
    assert pagerduty.health_check_url({"api_host": "api.pagerduty.com"}, "api_key").endswith(
        "/abilities"
    )
    salesforce = shipped_spec("salesforce")
    values = {
        "instance_url": "https://acme.my.salesforce.com",
        "login_host": "login.salesforce.com",
    }
    assert salesforce.api_base(values) == "https://acme.my.salesforce.com/services/data/v62.0"
    assert (
        salesforce.health_check_url(values)
        == "https://acme.my.salesforce.com/services/oauth2/userinfo"
    )


def test_how_secrets_are_sent():
    zendesk = shipped_spec("zendesk").auth_type("api_key").send
    headers, _ = zendesk.apply({"email": "a@example.com", "api_token": "tok"})
    # base64("a@example.com/token:tok")
    assert headers == {"Authorization": "Basic YUBleGFtcGxlLmNvbS90b2tlbjp0b2s="}
    freshdesk = shipped_spec("freshdesk").auth_type("api_key").send
    assert freshdesk.apply({"api_key": "key"})[0] == {"Authorization": "Basic a2V5Olg="}
    okta = shipped_spec("okta").auth_type("api_key").send
    assert okta.apply({"api_token": "t"})[0] == {"Authorization": "SSWS t"}
    pagerduty = shipped_spec("pagerduty").auth_type("pat").send
    assert pagerduty.apply({"token": "t"})[0] == {"Authorization": "Token token=t"}
    gitlab = shipped_spec("gitlab").auth_type("pat").send
    assert gitlab.apply({"token": "t"})[0] == {"PRIVATE-TOKEN": "t"}
    generic = shipped_spec("generic_http").auth_type("api_key").send
    assert generic.apply({"header_name": "X-Key", "api_key": "k"})[0] == {"X-Key": "k"}
    with pytest.raises(ValueError, match="line break"):
        generic.apply({"header_name": "X-Key", "api_key": "k\r\nHost: evil"})


def test_generic_connector_checks_the_path_the_user_chose():
    generic = shipped_spec("generic_http")
    base = {"base_url": "https://api.example.com/v1"}
    assert generic.health_check_url({**base, "check_path": "/me"}, "pat") == (
        "https://api.example.com/v1/me"
    )
    check_path = generic.field_map("pat")["check_path"]
    assert check_path.clean("") == "/"
    assert generic.health_check_url({**base, "check_path": "/"}, "pat") == (
        "https://api.example.com/v1/"
    )
    with pytest.raises(ValidationError, match="must start with /"):
        check_path.clean("https://elsewhere.example.com/")


def test_slack_needs_ok_true_in_a_200_answer():
    check = shipped_spec("slack").health_check
    assert check.is_success(200, {"ok": True, "team": "Acme"})
    assert not check.is_success(200, {"ok": False, "error": "invalid_auth"})
    assert not check.is_success(401, {"ok": True})
    assert check.read_identity({"ok": True, "team": "Acme"}, {}) == "Acme"


def test_identity_paths():
    answer = {"result": [{"user_name": "admin"}]}
    assert shipped_spec("servicenow").health_check.read_identity(answer, {}) == "admin"
    assert lookup_path({"user": {"email": "a@b.c"}}, "user.email") == "a@b.c"
    assert lookup_path({"result": []}, "result.0.user_name") is None


def test_atlassian_cloud_id_comes_from_the_site_the_user_named():
    lookup = shipped_spec("jira").auth_type("oauth2_authorization_code").oauth2.resource_lookup
    resources = [
        {"id": "other", "url": "https://other.atlassian.net", "scopes": []},
        {"id": "mine", "url": "https://acme.atlassian.net", "scopes": []},
    ]
    assert lookup.select(resources, {"site_url": "https://ACME.atlassian.net"}) == {
        "cloud_id": "mine"
    }
    assert lookup.select(resources, {"site_url": "https://nope.atlassian.net"}) is None


def test_docusign_api_base_comes_from_the_default_account():
    docusign = shipped_spec("docusign")
    lookup = docusign.auth_type("oauth2_authorization_code").oauth2.resource_lookup
    userinfo = {
        "email": "a@example.com",
        "accounts": [
            {"account_id": "1", "is_default": False, "base_uri": "https://na2.docusign.net"},
            {"account_id": "2", "is_default": True, "base_uri": "https://eu.docusign.net"},
        ],
    }
    found = lookup.select(userinfo, {})
    assert found == {"account_id": "2", "base_uri": "https://eu.docusign.net"}
    found["base_uri"] = docusign.clean_discovered_url(found["base_uri"])
    assert docusign.api_base(found, "oauth2_authorization_code") == (
        "https://eu.docusign.net/restapi/v2.1/accounts/2"
    )


def test_a_discovered_url_must_be_an_allowed_https_host():
    salesforce = shipped_spec("salesforce")
    assert salesforce.clean_discovered_url("https://acme.my.salesforce.com/") == (
        "https://acme.my.salesforce.com"
    )
    for bad in ("http://acme.my.salesforce.com", "https://169.254.169.254", "https://evil.com"):
        with pytest.raises(ValueError):
            salesforce.clean_discovered_url(bad)


def test_oauth_url_templates_fill_in_connection_fields():
    servicenow = shipped_spec("servicenow").auth_type("oauth2_authorization_code").oauth2
    values = {"instance_url": "https://acme.service-now.com"}
    assert render(servicenow.token_url, values) == "https://acme.service-now.com/oauth_token.do"
    zendesk = shipped_spec("zendesk").auth_type("oauth2_authorization_code").oauth2
    assert render(zendesk.authorize_url, {"subdomain": "acme"}) == (
        "https://acme.zendesk.com/oauth/authorizations/new"
    )
    outlook = shipped_spec("microsoft_outlook")
    tenant = outlook.field_map()["tenant"].clean("")
    assert render(outlook.auth_types[0].oauth2.token_url, {"tenant": tenant}) == (
        "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    )
    # A value never adds a path segment or another host.
    assert render("https://x.example/{a}", {"a": "../b?c"}) == "https://x.example/..%2Fb%3Fc"


# -- field validation ---------------------------------------------------------------


def test_jira_site_url_must_be_an_atlassian_site():
    site = shipped_spec("jira").field_map()["site_url"]
    assert site.clean(" https://Acme.atlassian.net/ ") == "https://acme.atlassian.net"
    with pytest.raises(ValidationError) as caught:
        site.clean("https://evil.example.com")
    assert caught.value.messages == [
        "Jira site URL must be an address like https://<name>.atlassian.net."
    ]
    with pytest.raises(ValidationError, match=r"like https://your-site\.atlassian\.net"):
        site.clean("https://acme.atlassian.net/jira/software")
    with pytest.raises(ValidationError, match=r"must be an https:// address"):
        site.clean("http://acme.atlassian.net")
    with pytest.raises(ValidationError, match="must not contain a user name or password"):
        site.clean("https://me:pw@acme.atlassian.net")
    with pytest.raises(ValidationError, match="must be an address like"):
        site.clean("https://atlassian.net.evil.com")
    with pytest.raises(ValidationError, match="is required"):
        site.clean("  ")


def test_servicenow_instance_url():
    instance = shipped_spec("servicenow").field_map()["instance_url"]
    assert instance.clean("https://dev12345.service-now.com") == "https://dev12345.service-now.com"
    with pytest.raises(ValidationError, match=r"https://<name>\.service-now\.com"):
        instance.clean("https://127.0.0.1")
    with pytest.raises(ValidationError, match="must not contain a query"):
        instance.clean("https://acme.service-now.com?x=1")


def test_subdomain_email_and_choice_fields():
    subdomain = shipped_spec("zendesk").field_map()["subdomain"]
    assert subdomain.clean("Acme") == "acme"
    with pytest.raises(ValidationError, match="must be a subdomain"):
        subdomain.clean("acme.zendesk.com")
    email = shipped_spec("jira").field_map("basic")["email"]
    assert email.clean("me@example.com") == "me@example.com"
    with pytest.raises(ValidationError, match="must be an e-mail address"):
        email.clean("not-an-address")
    region = shipped_spec("pagerduty").field_map()["api_host"]
    assert region.clean("") == "api.pagerduty.com"  # the default
    with pytest.raises(ValidationError, match="United States, European Union"):
        region.clean("api.evil.example")


def test_text_fields_with_a_pattern():
    sid = shipped_spec("twilio").field_map()["account_sid"]
    assert sid.clean("AC" + "f" * 32)
    with pytest.raises(ValidationError, match="starts with AC"):
        sid.clean("SK" + "f" * 32)
    header = shipped_spec("generic_http").field_map("api_key")["header_name"]
    assert header.clean("") == "X-API-Key"
    assert header.clean("Api-Key") == "Api-Key"
    for bad in ("Host", "cookie", "X Key", "X-Key\r\nHost: x", "Ünïcode"):
        with pytest.raises(ValidationError):
            header.clean(bad)
    tenant = shipped_spec("microsoft_outlook").field_map()["tenant"]
    assert tenant.clean("contoso.onmicrosoft.com") == "contoso.onmicrosoft.com"
    with pytest.raises(ValidationError, match="Directory must be"):
        tenant.clean("../../evil")


def test_generic_base_url_takes_any_public_https_host_only():
    base = shipped_spec("generic_http").field_map()["base_url"]
    assert base.clean("https://api.example.com/v1/") == "https://api.example.com/v1"
    with pytest.raises(ValidationError, match="https://"):
        base.clean("ftp://files.example.com")


# -- broken definitions -------------------------------------------------------------


def test_the_valid_example_loads(tmp_path):
    write(tmp_path, VALID)
    assert load_catalog([tmp_path], include_sandbox=False).get("acme").name == "Acme"


def test_missing_field(tmp_path):
    message = load_error(tmp_path, spoil(name=KeyError))
    assert "name: Field required" in message


def test_wrong_type(tmp_path):
    message = load_error(tmp_path, spoil(polling_interval_seconds="often"))
    assert "polling_interval_seconds:" in message and "valid integer" in message


def test_unknown_attribute(tmp_path):
    message = load_error(tmp_path, spoil(colour="red"))
    assert "colour: Extra inputs are not permitted" in message


def test_bad_host_pattern(tmp_path):
    message = load_error(tmp_path, spoil(allowed_hosts=["https://api.acme.example"]))
    assert "allowed_hosts" in message and "is not a host or *.domain pattern" in message


def test_api_base_outside_allowed_hosts(tmp_path):
    message = load_error(tmp_path, spoil(api_base_url="https://elsewhere.example/v1"))
    assert "api_base_url" in message and "not in allowed_hosts" in message


def test_unknown_placeholder_in_health_check_path(tmp_path):
    message = load_error(tmp_path, spoil(health_check__path="/users/{user_id}"))
    assert "health_check.path: uses {user_id}, which is not a field" in message


def test_unknown_placeholder_in_api_base_url(tmp_path):
    message = load_error(tmp_path, spoil(api_base_url="https://{tenant}.acme.example"))
    assert "api_base_url: uses {tenant}, which is not a field" in message


def test_a_secret_may_not_go_into_a_url(tmp_path):
    message = load_error(tmp_path, spoil(health_check__path="/check/{token}"))
    assert "health_check.path: uses {token}, a secret" in message


def test_unknown_placeholder_in_how_the_secret_is_sent(tmp_path):
    data = spoil()
    data["auth_types"][0]["send"] = {
        "scheme": "basic",
        "username": "{email}",
        "password": "{token}",
    }
    message = load_error(tmp_path, data)
    assert "send.username: uses {email}, which is not a field" in message


def test_a_placeholder_of_one_auth_type_only(tmp_path):
    data = spoil(health_check__path="/Accounts/{account}.json")
    data["auth_types"][0]["fields"] = [{"key": "account", "label": "Account"}]
    data["auth_types"].append(
        {
            "type": "api_key",
            "secrets": [{"key": "key", "label": "Key"}],
            "send": {"scheme": "bearer", "value": "{key}"},
        }
    )
    message = load_error(tmp_path, data)
    assert "uses {account}, which is not a field of the connector or of auth_types[api_key]" in (
        message
    )


def test_a_host_placeholder_must_be_a_subdomain_or_choice(tmp_path):
    data = spoil(api_base_url="https://{site}.acme.example", allowed_hosts=["*.acme.example"])
    data["fields"] = [{"key": "site", "label": "Site"}]
    message = load_error(tmp_path, data)
    assert "{site} is in the host, so it must be a choice or subdomain field" in message


def test_url_field_without_allowed_hosts(tmp_path):
    data = spoil(api_base_url="{site_url}")
    data["fields"] = [{"key": "site_url", "label": "Site", "type": "url"}]
    message = load_error(tmp_path, data)
    assert "fields.0" in message and "needs allowed_hosts" in message


def test_oauth_mandatory_scope_outside_defaults(tmp_path):
    data = spoil()
    data["auth_types"].append(
        {
            "type": "oauth2_authorization_code",
            "oauth2": {
                "authorize_url": "https://acme.example/authorize",
                "token_url": "https://acme.example/token",
                "default_scopes": ["read"],
                "mandatory_scopes": ["admin"],
            },
        }
    )
    message = load_error(tmp_path, data)
    assert "auth_types.1.oauth2" in message and "['admin'] are not in default_scopes" in message


def test_oauth_url_must_be_a_web_url(tmp_path):
    data = spoil()
    data["auth_types"].append(
        {"type": "oauth2_client_credentials", "oauth2": {"token_url": "ftp://acme.example/token"}}
    )
    message = load_error(tmp_path, data)
    assert "auth_types.1.oauth2.token_url" in message and "https://" in message


def test_key_must_match_the_file_name(tmp_path):
    message = load_error(tmp_path, VALID, name="other")
    assert "key: 'acme' must match the file name ('other')" in message


def test_duplicate_key_across_folders(tmp_path):
    first = write(tmp_path / "one", VALID)
    second = write(tmp_path / "two", VALID)
    with pytest.raises(CatalogError) as caught:
        load_catalog([tmp_path / "one", tmp_path / "two"], include_sandbox=False)
    message = str(caught.value)
    assert str(second) in message and str(first) in message
    assert "key: 'acme' is already defined" in message


def test_a_builtin_key_cannot_be_redefined(tmp_path):
    write(tmp_path, {**VALID, "key": "github"})
    with pytest.raises(CatalogError, match="'github' is already defined"):
        load_catalog([BUILTIN_DEFINITIONS, tmp_path], include_sandbox=False)


def test_invalid_yaml(tmp_path):
    message = load_error(tmp_path, "key: acme\nname: [unclosed\n")
    assert "not valid YAML" in message


def test_not_a_mapping(tmp_path):
    message = load_error(tmp_path, "- just\n- a list\n")
    assert "expected a mapping" in message


def test_missing_folder(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog([tmp_path / "nowhere"], include_sandbox=False)


# -- extra folders and the sandbox ----------------------------------------------------


def test_an_extra_folder_adds_a_connector(settings, tmp_path):
    assert get_catalog().get("acme") is None
    write(tmp_path, VALID)
    settings.PORTAL_CONNECTORS_DIRS = [str(tmp_path)]
    catalog = get_catalog()
    assert catalog.get("acme").name == "Acme"
    assert catalog.get("github") is not None
    assert [c.key for c in catalog.search("testing")] == ["acme"]


def test_a_broken_extra_folder_fails_loudly(settings, tmp_path):
    write(tmp_path, spoil(name=KeyError))
    settings.PORTAL_CONNECTORS_DIRS = [str(tmp_path)]
    with pytest.raises(CatalogError, match=r"acme\.yaml: name: Field required"):
        get_catalog()


def test_sandbox_only_when_enabled(settings):
    settings.PORTAL_SANDBOX_ENABLED = False
    assert get_catalog().get("sandbox") is None
    settings.PORTAL_SANDBOX_ENABLED = True
    assert get_catalog().get("sandbox") is not None
    assert shipped_spec("sandbox").sandbox


def test_portal_base_url_is_reserved_for_sandbox_connectors(tmp_path):
    message = load_error(tmp_path, spoil(api_base_url="{portal_base_url}/api"))
    assert "{portal_base_url} is only for sandbox connectors" in message


# -- egress hosts -------------------------------------------------------------------


def run_egress(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("egress_hosts", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_egress_hosts_lists_every_host_once_sorted(settings):
    settings.PORTAL_SANDBOX_ENABLED = False
    out, err = run_egress()
    hosts = out.splitlines()
    assert hosts == sorted(set(hosts))
    expected = {c_host for c in get_catalog().all() for c_host in c.egress_hosts()}
    assert set(hosts) == expected
    for host in (
        "api.github.com",
        "github.com",  # GitHub's token endpoint
        "*.atlassian.net",
        "auth.atlassian.com",
        "api.atlassian.com",
        "*.service-now.com",
        "*.zendesk.com",
        "api.twilio.com",
        "oauth2.googleapis.com",
        "login.microsoftonline.com",
        "*",
    ):
        assert host in hosts, host
    # Authorize pages are opened by the browser, not by the server.
    for browser_only in ("accounts.google.com", "app.hubspot.com", "www.dropbox.com"):
        assert browser_only not in hosts
    assert "*.atlassian.net" in err and "tenant's own host" in err
    assert "any public host" in err and "generic_http" in err


def test_egress_hosts_by_connector(settings, tmp_path):
    write(tmp_path, VALID)
    settings.PORTAL_CONNECTORS_DIRS = [str(tmp_path)]
    settings.PORTAL_SANDBOX_ENABLED = True
    out, _ = run_egress("--by-connector")
    blocks: dict[str, list[str]] = {}
    current = ""
    for line in out.splitlines():
        if line.startswith("  "):
            blocks[current].append(line.strip())
        else:
            current = line
            blocks[current] = []
    assert blocks["acme (Acme)"] == ["api.acme.example"]
    assert blocks["jira (Jira Cloud)"] == [
        "*.atlassian.net",
        "api.atlassian.com",
        "auth.atlassian.com",
    ]
    assert blocks["twilio (Twilio)"] == ["api.twilio.com"]
    assert blocks["sandbox (Sandbox)"] == [urlsplit(settings.PORTAL_BASE_URL).hostname]
    assert list(blocks) == sorted(blocks)


def test_security_doc_lists_the_hosts_of_every_connector():
    """docs/security.md's table is written by hand: keep it true."""
    text = (Path(settings.BASE_DIR) / "docs" / "security.md").read_text(encoding="utf-8")
    section = text.split("## Outbound hosts (firewall allow list)", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*`([a-z0-9_]+)`\s*\|[^|]*\|(.*)\|\s*$", line)
        if match:
            rows[match.group(1)] = set(re.findall(r"`([^`]+)`", match.group(2)))
    for connector in shipped():
        if connector.sandbox:
            continue
        assert rows.get(connector.key) == set(connector.egress_hosts()), connector.key


def test_connectors_doc_lists_every_shipped_connector():
    text = (Path(settings.BASE_DIR) / "docs" / "connectors.md").read_text(encoding="utf-8")
    assert "## The Sandbox connector" in text
    for connector in shipped():
        assert f"`{connector.key}`" in text, connector.key
