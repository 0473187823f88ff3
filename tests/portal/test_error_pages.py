"""The portal's own 404, 403 and 500 pages.

With debug off (as `make run` and production run), static file names come
from collectstatic's manifest; a page naming a file the manifest lacks fails.
The error pages name none, so they render even when collectstatic was never
run.
"""

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
