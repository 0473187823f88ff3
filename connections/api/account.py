"""Who the caller is (the lightest authenticated endpoint), and the tenant
settings a client needs to know."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja import Router

from connections.api.read_only import read_only
from connections.api.schemas import Me, PortalSettings, answers

router = Router()


@router.get("/me", response=answers({200: Me}), summary="The caller and its key")
def me(request: HttpRequest) -> dict:
    key = request.auth
    return {
        "user": request.user.get_username(),
        "robot": hasattr(request.user, "robot"),
        "api_key": f"{key.name} ({key.hint}…)",
        "api_key_expires_at": key.expires_at,
        "folder_scope": key.folder_id,
    }


@router.get(
    "/settings",
    response=answers({200: PortalSettings}),
    summary="The portal's settings a client needs",
    description="Whether the portal is in read-only mode, and where its pages are.",
)
def portal_settings(request: HttpRequest) -> dict:
    return {"read_only": read_only(), "portal_url": settings.PORTAL_BASE_URL + "/"}
