"""Solutions through the runtime API: the solutions you may see, one with
its versions, a version's package file, and uploading a package file (a
pipeline moving a solution from a test portal to production). The same
permission rules and domain functions as the pages (``solutions.access``,
``solutions.publishing``); an API key's folder scope narrows them. An
upload is a write: refused in read-only mode by the API-wide guard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Max
from django.http import Http404, HttpRequest
from ninja import Body, Query, Router, Schema, Status

from connections.api.folders import PageQuery
from connections.api.schemas import Id, answers, page_of
from connections.transfer.format import DocumentRefused
from portal.api_keys import in_scope
from portal.models import Folder
from portal.permissions import Action, require
from solutions import publishing
from solutions.access import NO_SUCH_SOLUTION, require_on_solution, solutions_where
from solutions.models import Solution, SolutionVersion
from solutions.package import validate

router = Router()


class VersionOut(Schema):
    number: int
    published_at: datetime
    published_by: str | None
    uploaded: bool
    notes: str


class SolutionOut(Schema):
    id: int
    name: str
    description: str
    source_folder_id: int | None
    latest_version: int | None
    created_at: datetime
    updated_at: datetime


class SolutionPage(Schema):
    items: list[SolutionOut]
    count: int
    page: int
    pages: int


class SolutionDetail(SolutionOut):
    versions: list[VersionOut]


class UploadedOut(Schema):
    solution: SolutionOut
    version: VersionOut
    created: bool


def _version_out(version: SolutionVersion) -> dict:
    return {
        "number": version.number,
        "published_at": version.published_at,
        "published_by": version.published_by.get_username() if version.published_by else None,
        "uploaded": version.uploaded,
        "notes": version.notes,
    }


def _solution_out(solution: Solution, latest: int | None) -> dict:
    return {
        "id": solution.pk,
        "name": solution.name,
        "description": solution.description,
        "source_folder_id": solution.source_folder_id,
        "latest_version": latest,
        "created_at": solution.created_at,
        "updated_at": solution.updated_at,
    }


def _visible(request: HttpRequest):
    solutions = solutions_where(request.user)
    key = request.auth
    if key.folder_id:
        solutions = solutions.filter(source_folder__path__startswith=key.folder.path)
    return solutions


def scoped_solution(request: HttpRequest, solution_id: int, action: Action) -> Solution:
    """404 out of sight or out of the key's scope, 403 without ``action``."""
    solution = Solution.objects.select_related("source_folder").filter(pk=solution_id).first()
    if solution is None:
        raise Http404(NO_SUCH_SOLUTION)
    folder = solution.source_folder
    if request.auth.folder_id and (folder is None or not in_scope(request.auth, folder)):
        raise Http404(NO_SUCH_SOLUTION)
    require_on_solution(request.user, solution, action)
    return solution


@router.get(
    "/solutions",
    response=answers({200: SolutionPage}, 422),
    summary="Solutions you may see",
)
def list_solutions(request: HttpRequest, query: Query[PageQuery]) -> dict:
    solutions = _visible(request).annotate(latest=Max("versions__number")).order_by("name")
    items, counts = page_of(solutions, query.page, query.page_size)
    return {"items": [_solution_out(s, s.latest) for s in items], **counts}


@router.get(
    "/solutions/{int:solution_id}",
    response=answers({200: SolutionDetail}, 404),
    summary="A solution with its versions",
)
def get_solution(request: HttpRequest, solution_id: int) -> dict:
    solution = scoped_solution(request, solution_id, Action.VIEW_SOLUTIONS)
    versions = list(solution.versions.select_related("published_by"))
    latest = versions[0].number if versions else None
    return {
        **_solution_out(solution, latest),
        "versions": [_version_out(v) for v in versions],
    }


@router.get(
    "/solutions/{int:solution_id}/versions/{int:number}/package",
    response=answers({200: dict[str, Any]}, 404),
    summary="A version's package file",
    description="The package document (format 1, its JSON Schema in "
    "solutions/package-schema.json). It never holds a credential.",
)
def download_solution_package(request: HttpRequest, solution_id: int, number: int) -> dict:
    solution = scoped_solution(request, solution_id, Action.VIEW_SOLUTIONS)
    version = solution.versions.filter(number=number).first()
    if version is None:
        raise Http404("No such version.")
    version.solution = solution
    publishing.download_package(version, actor=request.user)
    return validate(version.manifest).model_dump(mode="json")


class UploadQuery(Schema):
    folder_id: Id | None = None


@router.post(
    "/solutions/packages",
    response=answers({201: UploadedOut}, 400, 403, 404, 422),
    summary="Upload a package file",
    description="The body is a package document. It becomes the next version (flagged "
    "uploaded) of the solution of its name, or a new solution in the folder folder_id "
    "(Solutions - Author there). A malformed or newer-format package is refused whole, "
    "each problem named by field (422).",
)
def upload_solution_package(
    request: HttpRequest, package: Body[dict[str, Any]], query: Query[UploadQuery]
):
    try:
        parsed = validate(package)
    except DocumentRefused as error:
        raise _refused(error) from None
    existing = publishing.solution_for_upload(parsed)
    folder = None
    if existing is not None:
        scoped_solution(request, existing.pk, Action.AUTHOR_SOLUTIONS)
    else:
        if query.folder_id is None:
            raise ValidationError(
                {"folder_id": ["No solution here has this name: give the folder to keep it in."]}
            )
        folder = Folder.objects.filter(pk=query.folder_id).first()
        if folder is None or not in_scope(request.auth, folder):
            raise Http404("No such folder.")
        require(request.user, Action.AUTHOR_SOLUTIONS, folder)
    try:
        uploaded = publishing.upload_package(
            parsed.model_dump_json(), folder=folder, actor=request.user
        )
    except DocumentRefused as error:
        raise _refused(error) from None
    version = uploaded.version
    return Status(
        201,
        {
            "solution": _solution_out(version.solution, version.number),
            "version": _version_out(version),
            "created": uploaded.created,
        },
    )


def _refused(error: DocumentRefused) -> ValidationError:
    """The problems by where they are ("connections[0].auth_type: ...")."""
    errors: dict[str, list[str]] = {}
    for problem in error.problems:
        where, _, message = problem.partition(": ")
        errors.setdefault(where, []).append(problem if not message else f"{where}: {message}")
    return ValidationError(errors)
