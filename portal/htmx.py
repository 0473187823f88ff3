"""How a view answers htmx: one page template, its fragments as named partials.

Every fragment an htmx request swaps into a page is a named partial of that
page's template (``{% partialdef connector-list inline %}`` from
django-template-partials), named after the id of the element it is swapped
into (``hx-target="#connector-list"``); a fragment several pages share stays an
include, wrapped in a partial of that name on each page. The view renders with
``render_page(request, template, context, partials=("connector-list",))``: an
htmx request (``HX-Request``) whose ``HX-Target`` names one of the view's
partials gets ``template#that-partial``, anything else the full page (a plain
visit, a reload, an htmx history restore, which sends no target). Both answers
carry ``Vary: HX-Request, HX-Target``, so no cache hands a fragment to a page
visit or the other way round. A view whose other answers depend on htmx as
well (a redirect for a plain POST, ``HttpResponseClientRedirect`` for htmx)
marks them with ``vary_on_htmx``. Hence no hand-set ``Vary``, no fragment file
for one page's fragment, no ``hx-select`` cutting a fragment out of a full
page, no partial that only a POST can ask for.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.template.loader import render_to_string
from django.utils.cache import patch_vary_headers

# The request headers the choice between page and fragment reads.
HTMX_VARY = ("HX-Request", "HX-Target")

Response = TypeVar("Response", bound=HttpResponseBase)


def requested_partial(request: HttpRequest, partials: Collection[str]) -> str | None:
    """The partial an htmx request asks for by its target, if the view has it."""
    htmx = getattr(request, "htmx", None)
    if htmx and htmx.target in partials:
        return htmx.target
    return None


def vary_on_htmx(response: Response) -> Response:
    """Mark an answer that depends on whether (and where) htmx asked."""
    patch_vary_headers(response, HTMX_VARY)
    return response


def render_page(
    request: HttpRequest,
    template: str,
    context: dict | None = None,
    *,
    partials: Collection[str] = (),
    status: int | None = None,
    response_class: type[HttpResponse] = HttpResponse,
) -> HttpResponse:
    """Render ``template``, or only the partial the htmx request targets.

    ``status`` defaults to the response class's own (200, or 286 for
    ``HttpResponseStopPolling``)."""
    partial = requested_partial(request, partials)
    name = f"{template}#{partial}" if partial else template
    response = response_class(render_to_string(name, context, request), status=status)
    return vary_on_htmx(response)
