"""The forms every request value goes through: browsing and scans, the audit and job filters, drafts.

`fields` holds what all of them share (the bounded number, typed S3 URIs, the draft version) and
`editor` the metadata editor's forms; both are re-exported here.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.urls import reverse_lazy

from imports.forms.editor import EditorForm, EditorOpenForm, editor_rows_from_post
from imports.forms.fields import (
    ASCII_DIGITS,
    ASCII_UID,
    MAX_ROW_ID,
    BoundedIntegerField,
    DraftVersionForm,
    validate_s3_prefix,
    validate_typed_s3_uri,
)
from imports.jobs.search import job_has_failures, job_search
from imports.models import (
    AuditEvent,
    Datastore,
    DraftApproval,
    ImportJob,
    ImportJobResult,
    Scan,
)
from imports.validators import (
    S3_URI_MAX_LENGTH,
    split_s3_uri,
    validate_job_name,
)


class BrowseForm(forms.Form):
    """Where to browse: a datastore (its default input URI) and/or an s3:// URI."""

    datastore = forms.ModelChoiceField(
        queryset=Datastore.objects.filter(enabled=True),
        required=False,
        empty_label="No datastore",
        # Choosing opens the datastore at once (htmx sends the select alone, without the URI).
        widget=forms.Select(attrs={"hx-get": reverse_lazy("imports:browse")}),
    )
    uri = forms.CharField(
        label="S3 URI",
        required=False,
        max_length=1024,
        widget=forms.TextInput(
            # No autocomplete: the browser would restore a typed value on Back, over the folder shown.
            attrs={
                "placeholder": "s3://bucket/prefix/",
                "spellcheck": "false",
                "autocomplete": "off",
            }
        ),
    )

    def clean_uri(self) -> str:
        uri: str = self.cleaned_data["uri"].strip()
        if uri:
            validate_typed_s3_uri(uri)
        return uri

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        datastore: Datastore | None = data.get("datastore")
        uri = data.get("uri") or (datastore.input_s3_uri if datastore else "")
        if "uri" in self.errors:
            return data
        if not uri:
            raise ValidationError(
                "Choose a datastore or type an S3 URI such as s3://bucket/prefix/."
            )
        bucket, prefix = split_s3_uri(uri)
        # Browsing is by folder: "s3://b/incoming" means the folder "incoming/".
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        data["bucket"], data["prefix"] = bucket, prefix
        data["uri"] = f"s3://{bucket}/{prefix}"
        return data


class ScanFilterForm(forms.Form):
    status = forms.ChoiceField(
        choices=[("", "Any status"), *Scan.Status.choices],
        required=False,
        error_messages={
            "invalid_choice": "“%(value)s” is not a scan status; choose one from the list."
        },
    )
    q = forms.CharField(label="Bucket or prefix", required=False, max_length=200)


# The audit table shows ISO dates; the filters take the same form, in plain text inputs, because a
# date input shows the browser's locale format ("31/01/2026") next to a table that says 2026-01-31.
ISO_DATE_ERRORS = {"invalid": "Enter the date as YYYY-MM-DD, for example 2026-01-31."}


def _iso_date_input() -> forms.TextInput:
    return forms.TextInput(
        attrs={"placeholder": "YYYY-MM-DD", "inputmode": "numeric", "size": "10"}
    )


class DateRangeForm(forms.Form):
    """ "From" and "To" as ISO dates, with "From" not after "To": the filters of the audit trail and the jobs."""

    since = forms.DateField(
        label="From",
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=_iso_date_input(),
        error_messages=ISO_DATE_ERRORS,
    )
    until = forms.DateField(
        label="To",
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=_iso_date_input(),
        error_messages=ISO_DATE_ERRORS,
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            # On "To", so that it shows next to a field rather than above the table.
            self.add_error(
                "until",
                "“From” is after “To”: choose a start date on or before the end date.",
            )
        return data


TARGET_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class AuditFilterForm(DateRangeForm):
    field_order = ["action", "actor", "since", "until", "target_type", "target_id", "q"]

    action = forms.ChoiceField(
        choices=[("", "Any action"), *AuditEvent.Action.choices],
        required=False,
        error_messages={
            "invalid_choice": "“%(value)s” is not an action of the audit trail; choose one from the list."
        },
    )
    actor = forms.CharField(label="User", required=False, max_length=150)
    target_type = forms.ChoiceField(label="Target", required=False)
    target_id = forms.CharField(label="Target ID", required=False, max_length=64)
    q = forms.CharField(label="Text", required=False, max_length=200)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The kinds of object the trail names, as recorded (job events will add theirs).
        recorded = (
            AuditEvent.objects.exclude(target_type="")
            .order_by("target_type")
            .values_list("target_type", flat=True)
            .distinct()
        )
        self.fields["target_type"].choices = [  # type: ignore[attr-defined]
            ("", "Anything"),
            *((label, _target_label(label)) for label in recorded),
        ]

    def clean_target_id(self) -> str:
        value: str = self.cleaned_data["target_id"].strip()
        if value and not TARGET_ID.fullmatch(value):
            raise ValidationError(
                "A target ID is made of letters, digits, dots, dashes, underscores and colons, "
                "such as 42."
            )
        return value

    def filter(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        """The events matching the filters: all while the form is unbound, none while it is invalid
        (a list that silently ignored a bad filter would look like an answer)."""
        if not self.is_bound:
            return events
        if not self.is_valid():
            return events.none()
        data = self.cleaned_data
        if data["action"]:
            events = events.filter(action=data["action"])
        if data["actor"]:
            events = events.filter(actor_username__icontains=data["actor"])
        if data["since"]:
            events = events.filter(created_at__date__gte=data["since"])
        if data["until"]:
            events = events.filter(created_at__date__lte=data["until"])
        if data["target_type"]:
            events = events.filter(target_type=data["target_type"])
        if data["target_id"]:
            events = events.filter(target_id=data["target_id"])
        if data["q"]:
            events = events.filter(summary__icontains=data["q"])
        return events


def _target_label(label: str) -> str:
    try:
        return str(apps.get_model(label)._meta.verbose_name)
    except (LookupError, ValueError):
        return label


# --- Drafts ---------------------------------------------------------------------------------


class DraftStartForm(forms.Form):
    """A new import: the datastore, and its input and output URIs unless changed, and a job name."""

    datastore = forms.ModelChoiceField(
        queryset=Datastore.objects.filter(enabled=True), empty_label=None
    )
    input_s3_uri = forms.CharField(
        label="Input S3 URI",
        required=False,
        max_length=S3_URI_MAX_LENGTH,
        help_text="Default: the datastore's input URI. HealthImaging imports every object under it.",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )
    output_s3_uri = forms.CharField(
        label="Output S3 URI",
        required=False,
        max_length=S3_URI_MAX_LENGTH,
        help_text="Default: the datastore's output URI; must end with “/”.",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )
    job_name = forms.CharField(
        required=False,
        max_length=200,
        help_text="Optional: 1-64 letters, digits and . _ / # - (HealthImaging names the job otherwise).",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )

    def clean_input_s3_uri(self) -> str:
        uri: str = self.cleaned_data["input_s3_uri"].strip()
        if uri:
            validate_typed_s3_uri(uri)
        return uri

    def clean_output_s3_uri(self) -> str:
        uri: str = self.cleaned_data["output_s3_uri"].strip()
        if uri:
            validate_typed_s3_uri(uri, output=True)
        return uri

    def clean_job_name(self) -> str:
        name: str = self.cleaned_data["job_name"].strip()
        if name:
            validate_job_name(name)
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        datastore: Datastore | None = data.get("datastore")
        if datastore is None:
            return data
        if "input_s3_uri" in data:
            uri = data["input_s3_uri"] or datastore.input_s3_uri
            # metadataFilePath is relative to the input URI: a folder, so that "a/x.json" cannot mean "incominga/x.json".
            data["input_s3_uri"] = uri if uri.endswith("/") else uri + "/"
        if "output_s3_uri" in data:
            data["output_s3_uri"] = data["output_s3_uri"] or datastore.output_s3_uri
        return data


class DraftFromScanForm(forms.Form):
    """?scan= on "New import": the scan whose prefix and datastore the form starts from."""

    scan = BoundedIntegerField(label="Scan", required=False)


class ComposerPagesForm(forms.Form):
    """The composer's pages, named by a link or carried by a change's form; a bad one opens page 1."""

    studies_page = BoundedIntegerField(required=False)
    rows_page = BoundedIntegerField(required=False)
    series = forms.CharField(max_length=64, required=False)  # the preview's series

    def clean_series(self) -> str:
        series: str = self.cleaned_data["series"]
        return series if ASCII_UID.fullmatch(series) else ""


class DraftApprovalForm(DraftVersionForm):
    """An approver's decision on the version of the draft the page showed: approve or refuse, why, a note."""

    decision = forms.ChoiceField(
        choices=[("approve", "Approve"), ("refuse", "Refuse")],
        error_messages={
            "required": "choose Approve or Refuse.",
            "invalid_choice": "'%(value)s' is not a decision; choose Approve or Refuse.",
        },
    )
    reason = forms.ChoiceField(
        choices=DraftApproval.Reason.choices,
        error_messages={
            "required": "choose one: correction, merge or de-identification.",
            "invalid_choice": "'%(value)s' is not a reason; choose correction, merge or de-identification.",
        },
    )
    note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What was checked, for the audit trail (no patient values needed).",
    )

    def clean_note(self) -> str:
        return str(self.cleaned_data["note"]).strip()


class DraftSettingsForm(DraftVersionForm):
    job_name = forms.CharField(
        required=False,
        max_length=200,
        help_text="1-64 letters, digits and . _ / # -; empty lets HealthImaging name the job.",
    )
    output_s3_uri = forms.CharField(label="Output S3 URI", max_length=S3_URI_MAX_LENGTH)

    def clean_job_name(self) -> str:
        name: str = self.cleaned_data["job_name"].strip()
        if name:
            validate_job_name(name)
        return name

    def clean_output_s3_uri(self) -> str:
        uri: str = self.cleaned_data["output_s3_uri"].strip()
        validate_typed_s3_uri(uri, output=True)
        return uri


class DraftAssignForm(DraftVersionForm):
    path = forms.CharField(
        label="Metadata file",
        max_length=1024,
        strip=False,
        error_messages={"required": "Choose a JSON metadata file to map."},
    )
    target = forms.MultipleChoiceField(
        required=False,
        error_messages={"invalid_choice": "A chosen study or series is unknown."},
    )

    def __init__(self, *args: Any, targets: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        target = self.fields["target"]
        assert isinstance(target, forms.MultipleChoiceField)
        target.choices = [(t, t) for t in targets]

    def clean_target(self) -> list[tuple[str, str]]:
        values = self.cleaned_data["target"]
        if not values:
            raise ValidationError(
                "Tick the studies or series the file is for (study level: the study's box)."
            )
        pairs = []
        for value in values:
            study, _, series = value.partition("|")
            pairs.append((study, series))
        return pairs


class DraftUnmapForm(DraftVersionForm):
    mapping = BoundedIntegerField(label="Mapping")


class DraftCsvForm(DraftVersionForm):
    csv_file = forms.FileField(
        label="Mappings CSV",
        help_text="Header row studyInstanceUID,seriesInstanceUID,metadataFilePath; an empty series means study level.",
    )


class DraftConfirmForm(DraftVersionForm):
    content_hash = forms.CharField(max_length=64, widget=forms.HiddenInput)
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)
    acknowledge_warnings = forms.BooleanField(
        required=False, label="I have read the warnings and want to import anyway."
    )
    # Needed when the prediction says a series forks (imports/drafts/confirmation.py).
    accept_non_primary = forms.BooleanField(
        required=False,
        label="I accept that these series make non-primary image sets",
    )
    # Shown only once the duplicate-request guard has refused (imports/jobs/derived.py).
    import_again = forms.BooleanField(
        required=False,
        label="Import it again: I know a job of the last days made this same request.",
    )


class DraftFilterForm(forms.Form):
    STATES = [
        ("", "Any state"),
        ("error", "With errors"),
        ("warning", "With warnings only"),
        ("valid", "Valid"),
        ("empty", "No mappings"),
    ]
    mine = forms.BooleanField(label="Only mine", required=False)
    state = forms.ChoiceField(choices=STATES, required=False)
    q = forms.CharField(label="Job name or input", required=False, max_length=200)


class JobFilterForm(DateRangeForm):
    """The job history's filters, search and order, all in the URL so that a view can be shared."""

    COMPLETED_WITH_ERRORS = "completed_with_errors"
    field_order = [
        "q", "datastore", "status", "submitter", "since", "until", "external", "failures",
        "non_primary", "sort",
    ]  # fmt: skip
    # Column → ordering; "-" in the URL reverses it.
    SORTS = {
        "created": "created_at",
        "status": "status",
        "datastore": "datastore__name",
        "submitter": "submitted_by__username",
        "failed": "failure_count",
        "imported": "success_count",
    }

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=1024,
        help_text="Job name, AWS job ID, StudyInstanceUID or S3 key",
    )
    datastore = forms.ModelChoiceField(
        queryset=Datastore.objects.all(), required=False, empty_label="Any datastore"
    )
    status = forms.ChoiceField(
        choices=[
            ("", "Any status"),
            *ImportJob.Status.choices,
            (COMPLETED_WITH_ERRORS, "Completed with errors"),
        ],
        required=False,
    )
    submitter = forms.CharField(label="Submitted by", required=False, max_length=150)
    external = forms.ChoiceField(
        label="Started",
        choices=[("", "Anywhere"), ("no", "In the dashboard"), ("yes", "Outside")],
        required=False,
    )
    failures = forms.BooleanField(label="Has failed files", required=False)
    non_primary = forms.BooleanField(label="Has non-primary image sets", required=False)
    sort = forms.ChoiceField(
        required=False,
        choices=[("", "Newest first")]
        + [(key, key) for key in SORTS]
        + [(f"-{key}", f"-{key}") for key in SORTS],
    )

    def filter(self, jobs: QuerySet[ImportJob]) -> QuerySet[ImportJob]:
        """The jobs matching the filters: all while the form is unbound, none while a filter is invalid."""
        if not self.is_bound:
            return jobs.order_by("-created_at", "-id")
        if not self.is_valid():
            return jobs.none()
        data = self.cleaned_data
        if data["q"]:
            jobs = jobs.filter(job_search(data["q"].strip()))
        if data["datastore"]:
            jobs = jobs.filter(datastore=data["datastore"])
        if data["status"] == self.COMPLETED_WITH_ERRORS:
            jobs = jobs.filter(status=ImportJob.Status.COMPLETED).filter(
                job_has_failures()
            )
        elif data["status"]:
            jobs = jobs.filter(status=data["status"])
        if data["failures"]:
            jobs = jobs.filter(job_has_failures())
        if data["non_primary"]:
            jobs = jobs.filter(non_primary_count__gt=0)
        if data["submitter"]:
            jobs = jobs.filter(submitted_by__username__icontains=data["submitter"])
        if data["since"]:
            jobs = jobs.filter(created_at__date__gte=data["since"])
        if data["until"]:
            jobs = jobs.filter(created_at__date__lte=data["until"])
        if data["external"]:
            jobs = jobs.filter(external=data["external"] == "yes")
        sort = data["sort"] or "-created"
        column = self.SORTS[sort.lstrip("-")]
        return jobs.order_by(f"-{column}" if sort.startswith("-") else column, "-id")


class JobResultFilterForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[("", "Any outcome"), *ImportJobResult.Outcome.choices], required=False
    )
    q = forms.CharField(label="File", required=False, max_length=200)
    # Set by the links of "Failures by exception type"; exact, as HealthImaging names the type.
    exception = forms.CharField(label="Exception type", required=False, max_length=200)

    def filter(self, results: QuerySet[ImportJobResult]) -> QuerySet[ImportJobResult]:
        if not self.is_valid():
            return results
        if self.cleaned_data["outcome"]:
            results = results.filter(outcome=self.cleaned_data["outcome"])
        if self.cleaned_data["q"]:
            results = results.filter(input_file__icontains=self.cleaned_data["q"])
        if self.cleaned_data["exception"]:
            results = results.filter(exception_type=self.cleaned_data["exception"])
        return results

    def query(self) -> str:
        """The valid filters alone, as a query string: what the downloads of "what is shown" carry."""
        if not self.is_valid():
            return ""
        return urlencode({k: v for k, v in self.cleaned_data.items() if v})


__all__ = [
    "ASCII_DIGITS",
    "ASCII_UID",
    "MAX_ROW_ID",
    "BoundedIntegerField",
    "DraftVersionForm",
    "EditorForm",
    "EditorOpenForm",
    "editor_rows_from_post",
    "validate_s3_prefix",
    "validate_typed_s3_uri",
]
