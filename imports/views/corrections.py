"""Corrections from a spreadsheet in the composer: upload and review a sheet, then write and map it.

The reviewed sheet is kept in the user's session (one sheet, at most MAX_UPLOAD_BYTES) between the review and
the write, not sent back by the page: the write must be of the very bytes that were reviewed, and a client could
send other ones. The session is the user's own, ends with their sign-out or idle timeout, needs no table and no
clean-up, and the write form names the sheet's sha256, so a sheet uploaded in another tab since is not written
in its place. The write takes the sheet out of the session.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from imports.corrections import composer as corrections
from imports.drafts import services as drafts
from imports.forms.corrections import CorrectionsUploadForm, CorrectionsWriteForm
from imports.models import ImportDraft
from imports.views.common import CONFLICT, REFUSED, HtmxHttpRequest
from imports.views.drafts import (
    EDIT_PERMISSION,
    REVEAL_PERMISSION,
    REVEALED_SESSION_KEY,
    composer_response,
    editable_draft,
)

SHEET_SESSION_KEY = "corrections_sheet"


def _held(request: HttpRequest, draft: ImportDraft) -> tuple[bytes, str] | None:
    """The sheet this user reviewed for this draft, and its file name, if the session still holds it."""
    held = request.session.get(SHEET_SESSION_KEY)
    if not isinstance(held, dict) or held.get("draft") != draft.pk:
        return None
    data = base64.b64decode(held["data"])
    if hashlib.sha256(data).hexdigest() != held.get("sha256"):
        return None
    return data, str(held.get("name", ""))


def _review_page(
    request: HtmxHttpRequest,
    draft: ImportDraft,
    data: bytes,
    name: str,
    *,
    status: int | None = None,
    refusal: str = "",
) -> HttpResponse:
    """The review; `status` None: 200, or REFUSED when the sheet has problems."""
    revealed = draft.pk in request.session.get(REVEALED_SESSION_KEY, [])
    try:
        review = corrections.corrections_review(
            draft=draft, data=data, masked=not revealed
        )
    except corrections.CorrectionsRefused as refused:
        return composer_response(request, draft, status=REFUSED, refusal=str(refused))
    context: dict[str, Any] = {
        "draft": draft,
        "review": review,
        "name": name,
        "revealed": revealed,
        "can_reveal": request.user.has_perm(REVEAL_PERMISSION),
        "can_write": review.can_write
        and request.user.has_perm(EDIT_PERMISSION)
        and not draft.confirmed_at,
        "refusal": refusal,
    }
    if status is None:
        status = REFUSED if review.refusals or review.problems else 200
    return render(request, "imports/draft_corrections.html", context, status=status)


@require_http_methods(["GET", "POST"])
def draft_corrections(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """POST: upload a sheet and review it against the draft's scan. GET: the review of the sheet held."""
    draft = editable_draft(request, pk)
    if request.method == "GET":
        held = _held(request, draft)
        if held is None:
            return redirect("imports:draft_detail", pk=draft.pk)
        return _review_page(request, draft, *held)
    form = CorrectionsUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        reasons = " ".join(
            f"{form.fields[name].label}: {error}"
            for name, errors in form.errors.items()
            for error in errors
        )
        return composer_response(
            request, draft, status=REFUSED, refusal=f"{reasons} Nothing was read."
        )
    data: bytes = form.cleaned_data["sheet"]
    name = form.sheet_name
    request.session[SHEET_SESSION_KEY] = {
        "draft": draft.pk,
        "name": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "data": base64.b64encode(data).decode("ascii"),
    }
    return _review_page(request, draft, data, name)


@require_POST
def draft_corrections_write(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Write the reviewed sheet's files and map them into the draft; on any refusal nothing is written."""
    draft = editable_draft(request, pk)
    held = _held(request, draft)
    form = CorrectionsWriteForm(request.POST)
    if (
        held is None
        or not form.is_valid()
        or (hashlib.sha256(held[0]).hexdigest() != form.cleaned_data["sha256"])
    ):
        if held is None:
            return composer_response(
                request,
                draft,
                status=REFUSED,
                refusal="Nothing was written: the sheet you reviewed is no longer held (you signed out, or the "
                "session ended). Upload it again.",
            )
        return _review_page(
            request,
            draft,
            *held,
            status=REFUSED,
            refusal="Nothing was written: this is not the sheet you reviewed last (another tab uploaded "
            "another one since). Review this one and write it.",
        )
    data, name = held
    try:
        done = corrections.corrections_write_and_map(
            draft=draft,
            actor=request.user,
            version=form.cleaned_data["version"],
            data=data,
        )
    except drafts.DraftConflict as conflict:
        return _review_page(
            request,
            conflict.current,
            data,
            name,
            status=CONFLICT,
            refusal=str(conflict),
        )
    except corrections.CorrectionsRefused as refused:
        return _review_page(
            request, draft, data, name, status=REFUSED, refusal=str(refused)
        )
    request.session.pop(SHEET_SESSION_KEY, None)
    n = len(done.files)
    messages.success(
        request,
        f"Wrote {n} correction file{'s' if n != 1 else ''} under metadata/corrections/{done.sheet_id}/ and "
        f"mapped {'them' if n != 1 else 'it'} into the draft.",
    )
    return redirect("imports:draft_detail", pk=draft.pk)
