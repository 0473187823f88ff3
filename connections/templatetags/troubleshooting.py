"""``{{ error|help_anchor }}``: the troubleshooting entry that explains an
error message, for pages that only have the message (the OAuth error page)."""

from django import template

from connections.troubleshooting import error_kind

register = template.Library()


@register.filter
def help_anchor(error: object) -> str:
    return error_kind(state="", error=str(error or ""))
