"""The metadata editor: write a DICOM JSON file row by row, save it under the input prefix, map it in the draft.

The page is one form. Without JavaScript, "Check", "Add a row", "Remove" and "Save" are plain submits that re-render
it with every row's verdict; with htmx each row is checked as it is typed (the whole form is posted, so rows are
checked against each other too) and a changed tag re-renders its row, so the value widget follows the VR.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
)
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from imports.drafts import services as drafts
from imports.editor import files as editor
from imports.editor.rows import MAX_ROWS, RowCheck, RowInput, rows_check, tag_search
from imports.forms import EditorForm, EditorOpenForm, editor_rows_from_post
from imports.models import ImportDraft
from imports.views.common import CONFLICT, REFUSED, HtmxHttpRequest
from imports.views.drafts import (
    EDIT_PERMISSION,
    REVEAL_PERMISSION,
    REVEALED_SESSION_KEY,
    get_draft_for_user,
)

BLANK_ROWS = 1


def _checks(
    rows: list[RowInput], target: editor.Target | None, path: str
) -> list[RowCheck]:
    """Every row's verdict, blank rows included (as empty checks) so that the form keeps its shape."""
    mapping = target.mapping(path) if target and path else None
    checked = {c.number: c for c in rows_check(rows, target=mapping)}
    return [
        checked.get(n) or RowCheck(number=n, input=row)
        for n, row in enumerate(rows, start=1)
    ]


def _page(
    request: HtmxHttpRequest,
    draft: ImportDraft,
    *,
    target: editor.Target | None,
    path: str,
    rows: list[RowInput],
    loaded_etag: str,
    read_only_reason: str = "",
    refusal: str = "",
    conflict: editor.Opened | None = None,
    fix: editor.Fix | None = None,
    status: int = 200,
) -> HttpResponse:
    can_edit = request.user.has_perm(EDIT_PERMISSION) and not read_only_reason
    revealed = _revealed(request, draft)
    if can_edit and len(rows) < MAX_ROWS:
        rows = [*rows, *([RowInput()] * BLANK_ROWS)]
    checks = _checks(rows, target, path)
    form = EditorForm(
        initial={
            "version": draft.version,
            "study": target.study if target else "",
            "series": target.series if target else "",
            "path": path,
            "loaded_etag": loaded_etag,
        }
    )
    context = {
        "draft": draft,
        "form": form,
        "target": target,
        "path": path,
        "checks": checks,
        "errors": sum(bool(c.errors) for c in checks),
        "loaded_etag": loaded_etag,
        "can_edit": can_edit,
        "read_only_reason": read_only_reason,
        "refusal": refusal,
        "conflict": conflict,
        "conflict_checks": _checks(
            conflict.rows if revealed else editor.rows_masked(conflict.rows),
            target,
            path,
        )
        if conflict
        else [],
        "revealed": revealed,
        "can_reveal": request.user.has_perm(REVEAL_PERMISSION),
        "fix": fix,
        "max_rows": MAX_ROWS,
        "current": editor.editor_current_values(draft=draft, target=target),
    }
    template = "imports/editor.html#editor" if request.htmx else "imports/editor.html"
    return render(request, template, context, status=status)


def _revealed(request: HttpRequest, draft: ImportDraft) -> bool:
    """Patient values show unmasked only to a user who may reveal them and did, for this draft (audited)."""
    return request.user.has_perm(REVEAL_PERMISSION) and draft.pk in request.session.get(
        REVEALED_SESSION_KEY, []
    )


def _target(study: str, series: str) -> editor.Target | None:
    return editor.Target(study, series) if study else None


@require_http_methods(["GET", "POST"])
def editor_page(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    draft = get_draft_for_user(request, pk)
    if request.method == "POST":
        return _post(request, draft)
    opening = EditorOpenForm(request.GET)
    if not opening.is_valid():
        return _page(
            request,
            draft,
            target=None,
            path="",
            rows=[],
            loaded_etag="",
            read_only_reason=" ".join(_reasons(opening)),
            status=400,
        )
    study, series = opening.cleaned_data["study"], opening.cleaned_data["series"]
    path, attribute = opening.cleaned_data["path"], opening.cleaned_data["fix"]
    if not study and path:
        # Opened from a mapped file: the mapping says which study or series it is for.
        mapped = draft.mappings.filter(metadata_file_path=path).first()
        if mapped is not None:
            study, series = mapped.study_instance_uid, mapped.series_instance_uid
    target = _target(study, series)
    try:
        if attribute:
            fix = editor.editor_fix(
                draft=draft,
                study=study,
                series=series,
                attribute=attribute,
                revealed=_revealed(request, draft),
            )
            opened, target = fix.opened, fix.target
        else:
            fix = None
            if target is None and not path:
                raise editor.EditorRefused(
                    "Open the editor from a study or series of the composer."
                )
            if target is not None and (
                problem := editor.editor_target_problem(draft=draft, target=target)
            ):
                raise editor.EditorRefused(problem)
            opened = editor.editor_open(
                draft=draft,
                path=path or editor.default_path(target=target),  # type: ignore[arg-type]
            )
    except editor.EditorRefused as refused:
        return _page(
            request,
            draft,
            target=None,
            path=path,
            rows=[],
            loaded_etag="",
            read_only_reason=str(refused),
            status=400,
        )
    return _page(
        request,
        draft,
        target=target,
        path=opened.path,
        rows=opened.rows
        if _revealed(request, draft)
        else editor.rows_masked(opened.rows),
        loaded_etag=opened.etag,
        read_only_reason=opened.read_only_reason
        or (
            ""
            if target
            else "This file is not mapped in the draft: map it first, then edit it."
        ),
        fix=fix,
    )


def _parse(request: HttpRequest) -> tuple[EditorForm, list[RowInput]] | str:
    """The form and its rows, or why the request could not even be read (too many fields, too large)."""
    try:
        data = request.POST
    except TooManyFieldsSent:
        return (
            f"The form sent too many fields: a file written here holds at most {MAX_ROWS} attributes. "
            "Nothing was written."
        )
    except RequestDataTooBig:
        return "The form is too large (a metadata file is read up to 1 MiB). Nothing was written."
    rows = editor_rows_from_post(data)
    return EditorForm(data, row_count=len(rows)), rows


def _reasons(form: forms.Form) -> list[str]:
    """Each error of the form, named by its field's label, for a refusal shown above the rows."""
    return [
        f"{form.fields[name].label or name}: {error}"
        if name in form.fields
        else str(error)
        for name, errors in form.errors.items()
        for error in errors
    ]


def _post(request: HtmxHttpRequest, draft: ImportDraft) -> HttpResponse:
    if not request.user.has_perm(EDIT_PERMISSION):
        raise PermissionDenied("imports.import_to_datastore")
    parsed = _parse(request)
    if isinstance(parsed, str):
        return _page(
            request,
            draft,
            target=None,
            path="",
            rows=[],
            loaded_etag="",
            refusal=parsed,
            status=400,
        )
    form, rows = parsed
    valid = form.is_valid()
    data = form.cleaned_data if valid else {}
    target = _target(form.data.get("study", "")[:64], form.data.get("series", "")[:64])
    path = form.data.get("path", "")[:1024]
    loaded_etag = form.data.get("loaded_etag", "")[:128]
    if "remove" in form.errors:
        return _page(
            request,
            draft,
            target=target,
            path=path,
            rows=rows,
            loaded_etag=loaded_etag,
            refusal=f"Remove: {form.errors['remove'][0]} Nothing was removed.",
            status=REFUSED,
        )
    remove = form.cleaned_data.get("remove")
    if remove is not None and remove <= len(rows):
        rows.pop(remove - 1)
    action = request.POST.get("action", "check")
    if action != "save" or remove is not None:
        return _page(
            request, draft, target=target, path=path, rows=rows, loaded_etag=loaded_etag
        )
    if not valid or target is None:
        reasons = _reasons(form)
        return _page(
            request,
            draft,
            target=target,
            path=path,
            rows=rows,
            loaded_etag=loaded_etag,
            refusal=" ".join(reasons or ["The page was incomplete; reload it."])
            + " Nothing was written.",
            status=REFUSED,
        )
    try:
        saved = editor.editor_save(
            draft=draft,
            actor=request.user,
            version=data["version"],
            target=target,
            path=data["path"],
            rows=rows,
            loaded_etag=data["loaded_etag"],
            replace=data["replace"],
        )
    except editor.EditorConflict as conflict:
        return _page(
            request,
            draft,
            target=target,
            path=path,
            rows=rows,
            loaded_etag=conflict.current.etag,
            refusal=str(conflict),
            conflict=conflict.current,
            status=CONFLICT,
        )
    except editor.EditorRefused as refused:
        return _page(
            request,
            draft,
            target=target,
            path=path,
            rows=rows,
            loaded_etag=loaded_etag,
            refusal=str(refused),
            status=REFUSED,
        )
    except drafts.DraftConflict as conflict:
        return _page(
            request,
            conflict.current,
            target=target,
            path=path,
            rows=rows,
            loaded_etag=loaded_etag,
            refusal=str(conflict) + " Nothing was written.",
            status=CONFLICT,
        )
    except drafts.DraftRefused as refused:
        # Written, but the draft could not take the mapping (it changed meanwhile): say so plainly.
        return _page(
            request,
            draft,
            target=target,
            path=path,
            rows=rows,
            loaded_etag="",
            refusal=f"{data['path']} was written, but it could not be mapped: {refused}",
            status=CONFLICT,
        )
    messages.success(
        request,
        f"Wrote {saved.path} ({saved.size:,} bytes) and mapped it to the {target.level}.",
    )
    url = reverse("imports:draft_detail", kwargs={"pk": draft.pk}) + "#mappings"
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@require_POST
def editor_row(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One row's verdict as it is typed (htmx): the row itself when its tag changed, else its messages."""
    draft = get_draft_for_user(request, pk)
    if not request.user.has_perm(EDIT_PERMISSION):
        raise PermissionDenied("imports.import_to_datastore")
    parsed = _parse(request)
    if isinstance(parsed, str):
        return HttpResponse(parsed, status=400, content_type="text/plain")
    form, rows = parsed
    form.is_valid()
    number = form.cleaned_data.get("check_row")
    if number is None or number > len(rows):
        # A hidden field the page always sends: a bad one is a request the page did not send, not a refusal.
        error = form.errors.get("check_row", ["this field is required."])[0]
        return HttpResponse(
            f"Row to check: {error} Reload the page.",
            status=400,
            content_type="text/plain",
        )
    target = _target(form.data.get("study", "")[:64], form.data.get("series", "")[:64])
    checks = _checks(rows, target, form.data.get("path", "")[:1024])
    check = checks[number - 1]
    part = "row" if request.POST.get("part") == "row" else "row-check"
    context = {
        "check": check,
        "can_edit": True,
        "draft": draft,
        "errors": sum(bool(c.errors) for c in checks),
        "oob": True,
        "suggestions": tag_search(check.input.tag) if part == "row" else [],
        "current": editor.editor_current_values(draft=draft, target=target),
        "revealed": _revealed(request, draft),
    }
    return render(request, f"imports/editor.html#{part}", context)


@require_GET
def editor_tags(request: HtmxHttpRequest) -> HttpResponse:
    """Autocomplete over pydicom's data dictionary: tag, keyword, VR, name and level."""
    if not request.user.has_perm("imports.view_importdraft"):
        raise PermissionDenied("imports.view_importdraft")
    query = request.GET.get("q", "")[:64]
    context: dict[str, Any] = {"query": query, "suggestions": tag_search(query)}
    template = (
        "imports/editor.html#tag-options"
        if request.htmx
        else "imports/editor_tags.html"
    )
    return render(request, template, context)
