"""The job history's search: by name or AWS job ID, by a study a job imported, or by a file it read."""

from __future__ import annotations

import re

from django.db.models import Exists, OuterRef, Q

from imports.models import ImportJobResult, ObjectHeader

UID_TEXT = re.compile(r"\d+(\.\d+)+")


def job_has_failures() -> Q:
    return (
        Q(failure_count__gt=0)
        | Q(invalid_line_count__gt=0)
        | Q(customer_error_files__gt=0)
        | Q(server_error_files__gt=0)
    )


def job_search(text: str) -> Q:
    """Jobs a search names: by name or AWS job ID, by a study they imported, or by a file they read.

    "Who imported patient X's study" is answered by its StudyInstanceUID: a job whose mappings name the
    study, or one whose results list a file the scan knows as an instance of it. A job with no mapping for
    a study still imports it (HealthImaging takes the whole prefix), so the results are the ones to ask.
    """
    match = Q(job_name__icontains=text) | Q(aws_job_id=text.lower())
    if UID_TEXT.fullmatch(text):
        keys = ObjectHeader.objects.filter(study_instance_uid=text).values("key")
        match |= Q(request__icontains=f'"{text}"') | Q(
            Exists(
                ImportJobResult.objects.filter(job=OuterRef("pk"), input_file__in=keys)
            )
        )
    elif len(text) >= 3:
        match |= Q(
            Exists(
                ImportJobResult.objects.filter(
                    job=OuterRef("pk"), input_file__icontains=text
                )
            )
        )
    return match
