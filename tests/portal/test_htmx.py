"""One way to answer htmx (portal/htmx.py): the partial the request's target
names, else the full page, and Vary on both headers either way; and the
portal's own pages that htmx swaps parts of (folder access, API keys)."""

import copy

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling
from django_htmx.middleware import HtmxDetails

from portal import api_keys
from portal.htmx import render_page, requested_partial, vary_on_htmx
from portal.models import Role
from tests.factories import assign

PAGE = (
    "{% load partials %}<html><body><h1>Title</h1>"
    '{% partialdef results inline %}<ul id="results"><li>{{ item }}</li></ul>{% endpartialdef %}'
    '{% partialdef other inline %}<p id="other">other</p>{% endpartialdef %}'
    "</body></html>"
)


def htmx(target: str | None = None) -> dict:
    headers = {"HTTP_HX_REQUEST": "true"}
    if target:
        headers["HTTP_HX_TARGET"] = target
    return headers


def varies_on_htmx(response) -> bool:
    named = {header.strip().lower() for header in response.get("Vary", "").split(",")}
    return {"hx-request", "hx-target"} <= named


@pytest.fixture
def page_template(settings):
    """A page with two partials, served from memory behind the partials loader."""
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["OPTIONS"] = {
        "loaders": [
            (
                "template_partials.loader.Loader",
                [("django.template.loaders.locmem.Loader", {"page.html": PAGE})],
            )
        ],
    }
    templates[0].pop("APP_DIRS", None)
    settings.TEMPLATES = templates
    return "page.html"


def request(**headers):
    made = RequestFactory().get("/", **headers)
    made.htmx = HtmxDetails(made)
    return made


# --- the helper ----------------------------------------------------------------


def test_render_page_answers_the_partial_htmx_aims_at_and_the_page_otherwise(page_template):
    answers = {
        "htmx at the partial": render_page(
            request(**htmx("results")), page_template, {"item": "one"}, partials=("results",)
        ),
        "plain visit": render_page(
            request(), page_template, {"item": "one"}, partials=("results",)
        ),
        # Another element of the page, or one the view does not answer.
        "htmx elsewhere": render_page(
            request(**htmx("other")), page_template, {"item": "one"}, partials=("results",)
        ),
        # A history restore sends HX-Request (if configured so) but no target.
        "htmx without a target": render_page(
            request(**htmx()), page_template, {"item": "one"}, partials=("results",)
        ),
    }
    fragment = answers.pop("htmx at the partial")
    assert fragment.content.decode() == '<ul id="results"><li>one</li></ul>'
    assert varies_on_htmx(fragment)
    for label, page in answers.items():
        body = page.content.decode()
        assert body.startswith("<html>") and '<ul id="results"><li>one</li></ul>' in body, label
        assert varies_on_htmx(page), label
        assert page.status_code == 200


def test_render_page_keeps_the_status_and_the_response_class(page_template):
    refused = render_page(
        request(**htmx("results")), page_template, {}, partials=("results",), status=400
    )
    assert refused.status_code == 400 and "<html" not in refused.content.decode()
    done = render_page(
        request(**htmx("results")),
        page_template,
        {},
        partials=("results",),
        response_class=HttpResponseStopPolling,
    )
    assert isinstance(done, HttpResponseStopPolling) and done.status_code == 286
    assert varies_on_htmx(done)


def test_requested_partial_and_vary_on_htmx():
    assert requested_partial(request(**htmx("results")), ("results",)) == "results"
    assert requested_partial(request(**htmx("results")), ()) is None
    assert requested_partial(request(HTTP_HX_TARGET="results"), ("results",)) is None
    # A request that did not pass through the middleware is a plain one.
    assert requested_partial(RequestFactory().get("/"), ("results",)) is None

    response = HttpResponse()
    response["Vary"] = "Cookie"
    vary_on_htmx(vary_on_htmx(response))
    assert response["Vary"] == "Cookie, HX-Request, HX-Target"
    redirect = vary_on_htmx(HttpResponseClientRedirect("/elsewhere/"))
    assert isinstance(redirect, HttpResponseClientRedirect) and varies_on_htmx(redirect)


# --- the portal's pages ----------------------------------------------------------


@pytest.fixture
def folder_admin(make_user, tree, client):
    user = make_user("fay")
    assign(user, tree["finance"], "Folder Administrator")
    client.force_login(user)
    return user


def test_folder_access_answers_the_assignment_form_or_the_page(client, tree, folder_admin):
    url = reverse("folder_access", args=[tree["finance"].pk])
    refused = {"role": ""}  # no principal, no role: the form comes back with errors
    fragment = client.post(url, refused, **htmx("assignment-form"))
    page = client.post(url, refused)
    assert fragment.status_code == page.status_code == 400
    body = fragment.content.decode()
    assert "<html" not in body and body.lstrip().startswith('<form method="post"')
    assert 'id="assignment-form"' in body and 'data-testid="assignments"' not in body
    assert "<html" in page.content.decode() and 'id="assignment-form"' in page.content.decode()
    # The same partial for a GET aimed at it; the page for a plain GET.
    got = client.get(url, **htmx("assignment-form"))
    assert got.status_code == 200 and "<html" not in got.content.decode()
    assert "<html" in client.get(url).content.decode()
    for response in (fragment, page, got):
        assert varies_on_htmx(response)


def test_folder_access_success_redirects_the_way_the_request_came(
    client, tree, folder_admin, make_user
):
    url = reverse("folder_access", args=[tree["finance"].pk])
    viewer = Role.objects.get(name="Viewer").pk
    make_user("val"), make_user("vin")
    by_htmx = client.post(url, {"role": viewer, "user": "val"}, **htmx("assignment-form"))
    plain = client.post(url, {"role": viewer, "user": "vin"})
    assert by_htmx.status_code == 200 and by_htmx["HX-Redirect"] == url
    assert plain.status_code == 302 and plain["Location"] == url
    assert varies_on_htmx(by_htmx) and varies_on_htmx(plain)


@pytest.fixture
def ada(make_user, client):
    user = make_user("ada")
    client.force_login(user)
    return user


def test_api_keys_answer_the_keys_or_the_page(client, ada):
    url = reverse("api_keys")
    fragment = client.post(url, {"name": "By htmx", "days": "7"}, **htmx("api-keys"))
    page = client.post(url, {"name": "Plain", "days": "7"})
    assert fragment.status_code == page.status_code == 200
    body = fragment.content.decode()
    assert "<html" not in body and body.lstrip().startswith('<div id="api-keys"')
    assert 'data-testid="new-key"' in body
    assert "<html" in page.content.decode() and 'data-testid="new-key"' in page.content.decode()
    assert varies_on_htmx(fragment) and varies_on_htmx(page)
    # Refused: the keys again, with the form's errors, 400 either way.
    refused = client.post(url, {"name": "", "days": "7"}, **htmx("api-keys"))
    assert refused.status_code == 400 and "<html" not in refused.content.decode()


def test_a_robots_keys_answer_the_keys_or_the_page(client, tenant_admin):
    client.force_login(tenant_admin)
    robot = api_keys.create_robot(name="invoice-bot", description="", actor=tenant_admin)
    url = reverse("tenant_robot", args=[robot.pk])
    fragment = client.post(url, {"name": "prod", "days": "10"}, **htmx("api-keys"))
    page = client.post(url, {"name": "prod-2", "days": "10"})
    assert fragment.status_code == page.status_code == 200
    assert "<html" not in fragment.content.decode()
    assert 'id="api-keys"' in fragment.content.decode()
    assert "robot-heading" not in fragment.content.decode()
    assert "<html" in page.content.decode() and "robot-heading" in page.content.decode()
    assert varies_on_htmx(fragment) and varies_on_htmx(page)
