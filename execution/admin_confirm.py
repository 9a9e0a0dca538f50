"""The page an admin action shows before it acts: what it will do, to which rows, and a form
that posts the action again with confirm=yes."""

from django.contrib.admin import helpers
from django.template.response import TemplateResponse


def confirmed(request) -> bool:
    return request.POST.get("confirm") == "yes"


def confirmation(
    model_admin,
    request,
    *,
    action: str,
    title: str,
    explanation: str,
    items: list[tuple[object, str]],
    confirm: str,
) -> TemplateResponse:
    """The page asking to confirm `action` on `items` ((pk, label) of each row)."""
    return TemplateResponse(
        request,
        "admin/action_confirm.html",
        {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "title": title,
            "explanation": explanation,
            "items": items,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "confirm": confirm,
        },
    )
