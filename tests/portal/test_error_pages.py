"""The portal's own 404, 403 and 500 pages, and how refusals are logged.

With debug off (as `make run` and production run), static file names come
from collectstatic's manifest; a page naming a file the manifest lacks fails.
The error pages name none, so they render even when collectstatic was never
run. Refusals (4xx) are logged as one line; server errors keep their traceback.
"""

import io
import logging
import logging.config
import re

import pytest
from django.template import Context, Template

MANIFEST_STORAGE = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}
ERROR_URLS = "tests.portal.error_urls"


@pytest.fixture
def no_manifest(settings, tmp_path):
    """Production's static storage over a STATIC_ROOT collectstatic never filled."""
    settings.STATIC_ROOT = tmp_path / "staticfiles"
    settings.STATIC_ROOT.mkdir()
    settings.STORAGES = {**settings.STORAGES, "staticfiles": MANIFEST_STORAGE}
    assert settings.DEBUG is False


@pytest.fixture
def member(client, make_user):
    """A signed-in user who is no tenant administrator."""
    user = make_user("member")
    client.force_login(user)
    return user


def assert_portal_page(response, status: int, heading: str) -> str:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert page.startswith("<!DOCTYPE html>")
    assert "Connections portal" in page
    [h1] = re.findall(r"<h1>(.*?)</h1>", page, re.S)
    assert re.sub(r"<[^>]+>", "", h1).strip() == heading
    assert f"Error {status}" in page
    # Nothing that depends on collectstatic, nothing the CSP refuses.
    assert "/static/" not in page
    assert "<link" not in page
    assert "<script" not in page
    assert "<style" not in page
    assert not re.search(r"\sstyle=", page)
    return page


def test_the_setup_reproduces_the_missing_manifest(no_manifest):
    """What crashed every 404 before: naming a static file with no manifest."""
    with pytest.raises(ValueError, match="Missing staticfiles manifest entry"):
        Template("{% load static %}{% static 'portal/portal.css' %}").render(Context())


@pytest.mark.django_db
def test_404_without_a_manifest(client, no_manifest):
    response = client.get("/no-such-page/")
    page = assert_portal_page(response, 404, "Not found")
    assert "This page does not exist, or you do not have access to it." in page
    assert 'href="/"' in page
    # The portal's page, not Django's technical one listing the URL patterns.
    assert "URLconf" not in page


def test_404_for_a_folder_the_user_cannot_see(client, member, no_manifest):
    response = client.get("/folders/987654321/")
    assert_portal_page(response, 404, "Not found")


def test_403_without_a_manifest(client, member, no_manifest):
    response = client.get("/tenant/")
    page = assert_portal_page(response, 403, "You are not allowed to do this")
    # The refusal's own reason, as the view gave it.
    assert "Only tenant administrators may do this." in page


@pytest.mark.urls(ERROR_URLS)
def test_403_with_a_reason_shows_it(client, member, no_manifest):
    page = assert_portal_page(
        client.get("/test-errors/refuse/"), 403, "You are not allowed to do this"
    )
    assert "You do not have Connections - Delete in this folder." in page


@pytest.mark.urls(ERROR_URLS)
def test_403_without_a_reason_says_why_in_general(client, member, no_manifest):
    page = assert_portal_page(
        client.get("/test-errors/refuse-plainly/"), 403, "You are not allowed to do this"
    )
    assert "Your role in this folder does not include this action." in page


@pytest.mark.django_db
@pytest.mark.urls(ERROR_URLS)
def test_500_without_a_manifest(client, no_manifest):
    client.raise_request_exception = False
    response = client.get("/test-errors/explode/")
    page = assert_portal_page(response, 500, "Something went wrong")
    assert "internal detail" not in page
    assert "Traceback" not in page


@pytest.mark.django_db
@pytest.mark.urls(ERROR_URLS)
def test_400_without_a_manifest(client, no_manifest):
    response = client.get("/test-errors/bad-request/")
    page = assert_portal_page(response, 400, "Bad request")
    assert "internal detail" not in page


@pytest.mark.django_db
def test_a_page_that_needs_static_files_fails_into_the_500_page(client, no_manifest):
    """The sign-in page names the stylesheet: without a manifest it fails,
    and what the person sees is still the portal's 500 page."""
    client.raise_request_exception = False
    response = client.get("/accounts/login/")
    assert_portal_page(response, 500, "Something went wrong")


def test_the_500_handler_renders_without_a_request_context(rf, no_manifest):
    from django.views.defaults import server_error

    response = server_error(rf.get("/anything/"))
    assert_portal_page(response, 500, "Something went wrong")


def test_error_pages_carry_the_content_security_policy(client, member, no_manifest):
    response = client.get("/tenant/")
    assert response.status_code == 403
    assert "style-src 'self'" in response["Content-Security-Policy"]


# --- Logging -----------------------------------------------------------------


@pytest.fixture
def console(settings):
    """The console handler exactly as settings.LOGGING describes it (formatter,
    filters), on the root logger, writing into a buffer. Built from the
    settings rather than looked up: an embedded Celery worker started by
    another test replaces the root logger's handlers."""
    config = settings.LOGGING
    spec = config["handlers"]["console"]
    assert spec["class"] == "logging.StreamHandler"
    configurator = logging.config.DictConfigurator({})
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(
        configurator.configure_formatter(dict(config["formatters"][spec["formatter"]]))
    )
    for name in spec.get("filters", []):
        handler.addFilter(configurator.configure_filter(dict(config["filters"][name])))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)


def request_records(caplog, logger="django.request"):
    return [record for record in caplog.records if record.name == logger]


def test_a_refusal_is_logged_as_one_line(client, member, caplog, console):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get("/tenant/")
    assert response.status_code == 403
    [record] = request_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "Forbidden (Permission denied): /tenant/"
    assert record.exc_info is None
    printed = [line for line in console.getvalue().splitlines() if "django.request" in line]
    assert len(printed) == 1
    assert printed[0].endswith("WARNING django.request Forbidden (Permission denied): /tenant/")
    assert "Traceback" not in console.getvalue()


def test_a_404_is_logged_as_one_line(client, member, caplog, console):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get("/folders/987654321/").status_code == 404
    [record] = request_records(caplog)
    assert record.getMessage() == "Not Found: /folders/987654321/"
    assert record.exc_info is None
    assert "Traceback" not in console.getvalue()


@pytest.mark.django_db
def test_a_refused_host_is_logged_as_one_line(client, caplog, console):
    """django.security.DisallowedHost: its own logger, filtered at the handler."""
    with caplog.at_level(logging.WARNING):
        response = client.get("/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    [record] = request_records(caplog, "django.security.DisallowedHost")
    assert "evil.example" in record.getMessage()
    printed = console.getvalue()
    assert len([line for line in printed.splitlines() if "DisallowedHost" in line]) == 1
    assert "Traceback" not in printed


@pytest.mark.django_db
@pytest.mark.urls(ERROR_URLS)
def test_a_server_error_keeps_its_traceback(client, caplog, console):
    client.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="django.request"):
        assert client.get("/test-errors/explode/").status_code == 500
    [record] = request_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "Internal Server Error: /test-errors/explode/"
    assert record.exc_info is not None
    printed = console.getvalue()
    assert "Traceback (most recent call last)" in printed
    assert "ExplodedError: internal detail the page must not show" in printed


def test_django_records_reach_the_console_once():
    """Django's own console handler (it prints when debug is on, beside the
    root's) is gone: between django.request and the root, no logger has a
    handler of its own."""
    logger = logging.getLogger("django.request")
    handlers = []
    while logger is not None:
        handlers += [(logger.name, h) for h in logger.handlers]
        logger = logger.parent if logger.propagate else None
    django_own = [name for name, _ in handlers if name.startswith("django")]
    assert django_own == []
