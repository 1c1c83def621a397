"""Import jobs: the history, one job's page with its live status and results, downloads, new drafts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from imports.audit import records as audit
from imports.drafts import approval, from_job
from imports.forms import JobFilterForm, JobResultFilterForm
from imports.jobs import record as import_record
from imports.jobs import submit as jobs
from imports.jobs import verification
from imports.jobs.image_sets import job_image_sets_page
from imports.models import AuditEvent, ImportDraft, ImportJob, ImportJobResult
from imports.views.common import (
    HtmxHttpRequest,
    csv_response,
    filters_query,
    get_job_for_user,
    get_job_status_for_user,
    key_mask,
    page_number,
    permission_required,
    render_page,
)

RESULT_FIELDS = [
    "line",
    "outcome",
    "input_file",
    "image_set_id",
    "image_set_version",
    "is_primary",
    "exception_type",
    "message",
]
# The result fields that name keys: masked for viewers (imports.views.common.key_mask).
MASKED_RESULT_FIELDS = frozenset({"input_file", "message"})
JOB_EXPORT_FIELDS = [
    "id", "datastore", "status", "aws_job_id", "job_name", "external", "submitted_by", "input_s3_uri",
    "mappings", "created_at", "submitted_at", "ended_at", "imported", "failed", "warnings",
    "non_primary_image_sets", "error_code",
]  # fmt: skip


@require_GET
@permission_required("imports.view_importjob")
def job_list(request: HtmxHttpRequest) -> HttpResponse:
    form = JobFilterForm(request.GET or None)
    queryset = form.filter(
        ImportJob.objects.select_related("datastore", "submitted_by")
    )
    page = Paginator(queryset, 50).get_page(page_number(request))
    query = request.GET.copy()
    query.pop("page", None)
    current_sort = query.pop("sort", [""])[-1]
    context = {
        "form": form,
        "page": page,
        "query": filters_query(request),
        "sorts": _sort_links(query.urlencode(), current_sort),
    }
    return render_page(request, "imports/job_list.html", "job-table", context)


def _sort_links(query: str, current: str) -> dict[str, dict[str, str]]:
    """Per sortable column: the link that sorts by it, and its arrow when it is the current order.

    A first click sorts a column descending (newest, most failed first); a second reverses it.
    """
    current = current or "-created"
    links = {}
    for column in JobFilterForm.SORTS:
        order = column if current == f"-{column}" else f"-{column}"
        state = {column: "↑", f"-{column}": "↓"}.get(current, "")
        links[column] = {
            "href": "?" + (f"{query}&" if query else "") + f"sort={order}",
            "state": state,
        }
    return links


@require_GET
@permission_required("imports.view_importjob")
def job_export(request: HttpRequest, export_format: str) -> HttpResponseBase:
    """The filtered job history as CSV or JSON Lines, streamed (flat memory however long); audited."""
    form = JobFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        problems = "; ".join(
            f"{form[name].label if name in form.fields else 'filters'}: {' '.join(str(e) for e in errors)}"
            for name, errors in form.errors.items()
        )
        return HttpResponse(
            f"Nothing was exported: {problems}",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    audit.export_record(
        actor=request.user,
        what="the import job history",
        export_format=export_format,
        filters=form.cleaned_data if form.is_bound else None,
    )
    queryset = form.filter(
        ImportJob.objects.select_related("datastore", "submitted_by")
    )

    def rows() -> Iterator[list[Any]]:
        for job in queryset.iterator(chunk_size=2000):
            yield [
                job.pk, job.datastore.name, job.status_code, job.aws_job_id, job.job_name,
                "yes" if job.external else "no",
                job.submitted_by.get_username() if job.submitted_by else "",
                job.input_s3_uri, job.mapping_count, _iso(job.created_at), _iso(job.submitted_at),
                _iso(job.ended_at), job.success_count + job.warning_count, job.failure_count,
                job.warning_count, job.non_primary_count, job.error_code,
            ]  # fmt: skip

    if export_format == "jsonl":

        def lines() -> Iterator[str]:
            for row in rows():
                yield json.dumps(dict(zip(JOB_EXPORT_FIELDS, row, strict=True))) + "\n"

        response = StreamingHttpResponse(
            lines(), content_type="application/x-ndjson; charset=utf-8"
        )
        response["Content-Disposition"] = 'attachment; filename="import-jobs.jsonl"'
        return response
    return csv_response("import-jobs.csv", JOB_EXPORT_FIELDS, rows())


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _status_context(job: ImportJob) -> dict[str, Any]:
    """What the polled status fragment shows: only the job's own row, plus its queue place when waiting."""
    context: dict[str, Any] = {"job": job, "timeline": _timeline(job)}
    if job.status == ImportJob.Status.PENDING:
        in_flight = jobs.in_flight_count(job.datastore_id)
        context["quota_full"] = in_flight >= job.datastore.max_concurrent_jobs
        context["queue_position"] = (
            jobs.queue_position(job) if context["quota_full"] else None
        )
    return context


def _timeline(job: ImportJob) -> list[dict[str, Any]]:
    """Queued → submitted → in progress → the end, each with its time and how long the step took."""
    ended_label = job.display_status if job.has_ended else "Completed"
    steps = [
        ("Queued", job.created_at if not job.external else None),
        ("Submitted", job.submitted_at),
        ("In progress", job.started_at),
        (ended_label, job.ended_at),
    ]
    timeline = []
    for index, (label, at) in enumerate(steps):
        following = next((t for _, t in steps[index + 1 :] if t is not None), None)
        timeline.append(
            {
                "label": label,
                "at": at,
                "took": (following - at) if at and following else None,
                "done": at is not None,
            }
        )
    return timeline


@require_GET
def job_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    job = get_job_for_user(request, pk)
    context = _status_context(job)
    mask = key_mask(request, job.input_s3_uri)
    context.update(
        {
            "key_mask": mask,
            # The request names the input prefix and the metadata files, whose keys may carry patient IDs.
            "request_json": mask(json.dumps(job.request, indent=2)),
            "events": AuditEvent.objects.filter(
                target_type="imports.importjob", target_id=str(job.pk)
            ).order_by("created_at", "id")[:200],
            "can_import": request.user.has_perm("imports.import_to_datastore"),
            "derived_drafts": job.derived_drafts.all()[:20],
            "approval": approval.job_approval(job),
        }
    )
    if job.results == ImportJob.Results.DONE:
        context.update(_results_context(request, job))
    context.update(_verification_context(request, job))
    return render(request, "imports/job_detail.html", context)


def _verification_context(request: HttpRequest, job: ImportJob) -> dict[str, Any]:
    """The verification card: its sentence, the mismatches file by file, the wrong predictions.

    Expected and stored values are patient data (names, IDs, descriptions): shown only to those who may reveal
    patient details; others see the attribute, its level and the file, with the values hidden.
    """
    reveal = request.user.has_perm("imports.reveal_phi")
    return {
        "key_mask": key_mask(request, job.input_s3_uri),
        "verification_sentence": verification.verification_sentence(job),
        "verification_pending": verification.verification_pending(job),
        "mismatch_groups": verification.mismatches_by_file(job),
        "wrong_predictions": (job.verification_detail or {}).get(
            "wrong_predictions", []
        ),
        "reveal_values": reveal,
        "can_verify": request.user.has_perm("imports.import_to_datastore")
        and job.results == ImportJob.Results.DONE,
        "can_download_record": reveal and bool(job.record),
    }


@require_GET
def job_verification(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled verification card; 286 (stop polling) once the verification is no longer pending."""
    job = get_job_for_user(request, pk)
    response = render(
        request,
        "imports/job_detail.html#verification",
        {"job": job, **_verification_context(request, job)},
    )
    if not verification.verification_pending(job):
        response.status_code = HTMX_STOP_POLLING
    return response


@require_POST
@permission_required("imports.import_to_datastore")
def job_verify_again(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_job_for_user(request, pk)
    if verification.job_verify_again(job=job, actor=request.user):
        messages.success(
            request, "The verification runs again: this page shows it when it is done."
        )
    elif job.results != ImportJob.Results.DONE:
        messages.warning(
            request,
            "There is nothing to verify yet: the job's results have not been read.",
        )
    else:
        messages.warning(request, "The verification is running already.")
    return redirect("imports:job_detail", pk=job.pk)


@require_GET
@permission_required("imports.reveal_phi")
def job_record_download(request: HttpRequest, pk: int) -> HttpResponse:
    """The signed import record, as written (it holds patient values, so only for those who may reveal them)."""
    job = get_job_for_user(request, pk)
    if not job.record:
        raise Http404(
            "This job has no signed import record yet: it is written once the job is verified."
        )
    audit.export_record(
        actor=request.user,
        what=f"the signed import record of job {job.pk}",
        export_format="json",
        target=job,
    )
    response = HttpResponse(
        import_record.record_text(job.record),
        content_type="application/json; charset=utf-8",
    )
    response["Content-Disposition"] = (
        f'attachment; filename="import-record-{job.pk}.json"'
    )
    return response


@require_GET
def job_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled status fragment. Once the job has ended and its results are read it answers 286,
    which stops the polling, and loads the results section once."""
    job = get_job_status_for_user(request, pk)
    context = {**_status_context(job), "load_results": True}
    response = render(request, "imports/job_detail.html#status", context)
    if not job.is_live:
        response.status_code = HTMX_STOP_POLLING
    return response


def _results_context(request: HttpRequest, job: ImportJob) -> dict[str, Any]:
    form = JobResultFilterForm(request.GET)
    files = Paginator(
        form.filter(ImportJobResult.objects.filter(job=job)), 50
    ).get_page(page_number(request))
    failure_groups = list(
        ImportJobResult.objects.filter(
            job=job,
            outcome__in=(
                ImportJobResult.Outcome.FAILURE,
                ImportJobResult.Outcome.INVALID,
            ),
        )
        .values("outcome", "exception_type", "message")
        .annotate(count=Count("id"))
        .order_by("exception_type", "-count", "message")[:100]
    )
    total = job.success_count + job.warning_count + job.failure_count
    image_sets, image_set_rows = job_image_sets_page(
        job=job, page=request.GET.get("sets_page")
    )
    return {
        "key_mask": key_mask(request, job.input_s3_uri),
        "result_form": form,
        "files": files,
        "files_query": filters_query(request),
        "filter_query": form.query(),
        "failure_groups": failure_groups,
        "image_sets": image_sets,
        "image_set_rows": image_set_rows,
        "result_total": total,
    }


@require_GET
def job_results(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The results section, or only its file table when the filter form asks (htmx)."""
    job = get_job_for_user(request, pk)
    context = {"job": job, **_results_context(request, job)}
    fragment = "files" if request.GET.get("fragment") == "files" else "results"
    return render(request, f"imports/job_detail.html#{fragment}", context)


@require_GET
def job_results_download(
    request: HttpRequest, pk: int, fmt: str
) -> StreamingHttpResponse:
    """The result lines of a job, streamed as CSV or JSON lines (flat memory however many there are).

    With the file table's filters in the query string it exports what the table shows; without, every line.
    """
    job = get_job_for_user(request, pk)
    if fmt not in ("csv", "jsonl"):
        raise Http404
    mask = key_mask(request, job.input_s3_uri)
    rows = (
        [
            mask(value) if name in MASKED_RESULT_FIELDS else value
            for name, value in zip(RESULT_FIELDS, row, strict=True)
        ]
        for row in JobResultFilterForm(request.GET)
        .filter(ImportJobResult.objects.filter(job=job))
        .order_by("id")
        .values_list(*RESULT_FIELDS)
        .iterator(chunk_size=2000)
    )
    if fmt == "csv":
        return csv_response(f"job-{job.pk}-results.csv", RESULT_FIELDS, rows)

    def lines() -> Iterator[str]:
        for row in rows:
            yield json.dumps(dict(zip(RESULT_FIELDS, row, strict=True))) + "\n"

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson")
    response["Content-Disposition"] = (
        f'attachment; filename="job-{job.pk}-results.jsonl"'
    )
    return response


def _draft_url(draft: ImportDraft, job: ImportJob) -> str:
    # The composer's draft page, once it is there; until then the job page says which draft was made.
    try:
        return reverse("imports:draft_detail", args=[draft.pk])
    except NoReverseMatch:
        return reverse("imports:job_detail", args=[job.pk])


def _files(count: int) -> str:
    return f"{count} file{'s' if count != 1 else ''}"


@require_POST
@permission_required("imports.import_to_datastore")
def job_retry_failed(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_job_for_user(request, pk)
    if not job.failure_count:
        messages.warning(request, "This job has no failed files to retry.")
        return redirect("imports:job_detail", pk=job.pk)
    draft, scope = from_job.job_draft_retry_failed(job=job, actor=request.user)
    if draft is None:
        messages.warning(
            request,
            f"Nothing to retry: the {_files(len(scope.unknown_files))} that failed "
            f"{'are' if len(scope.unknown_files) != 1 else 'is'} not DICOM or not in a scan, so a "
            "retry cannot help. Fix or remove them under the input prefix.",
        )
        return redirect("imports:job_detail", pk=job.pk)
    text = (
        f"Draft {draft.pk} holds the {len(scope.studies)} "
        f"stud{'y' if len(scope.studies) == 1 else 'ies'} of the failed files "
        f"and {draft.mappings.count()} of the job's mappings."
    )
    if scope.unknown_files:
        text += (
            f" {len(scope.unknown_files)} other failed file{'s are' if len(scope.unknown_files) != 1 else ' is'} "
            "not DICOM or not in a scan, so a retry cannot help them: fix or remove them under the input prefix."
        )
    messages.success(request, text)
    return redirect(_draft_url(draft, job))


@require_POST
@permission_required("imports.import_to_datastore")
def job_clone(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_job_for_user(request, pk)
    if job.external:
        messages.error(
            request,
            "A job started outside the dashboard has no stored request to clone.",
        )
        return redirect("imports:job_detail", pk=job.pk)
    draft = from_job.job_draft_clone(job=job, actor=request.user)
    messages.success(request, f"Draft {draft.pk} is a copy of this job's request.")
    return redirect(_draft_url(draft, job))


@require_GET
@permission_required("imports.view_importjob")
def jobs_active(request: HttpRequest) -> HttpResponse:
    """The dashboard's live list: one fragment polled for every running job, not one request per row."""
    active = list(
        ImportJob.objects.exclude(status__in=ImportJob.ENDED)
        .select_related("datastore")
        .order_by("created_at")[:50]
    )
    # Never 286 here: with nothing running the fragment keeps polling, slowly, for jobs started elsewhere.
    return render(
        request, "imports/dashboard.html#active-jobs", {"active_jobs": active}
    )
