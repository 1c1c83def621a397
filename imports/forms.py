from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from imports.models import AuditEvent, Datastore, ImportJob, ImportJobResult, Scan
from imports.validators import split_s3_uri, validate_s3_uri


class BrowseForm(forms.Form):
    """Where to browse: a datastore (its default input URI) and/or an s3:// URI."""

    datastore = forms.ModelChoiceField(
        queryset=Datastore.objects.filter(enabled=True),
        required=False,
        empty_label="No datastore",
    )
    uri = forms.CharField(
        label="S3 URI",
        required=False,
        max_length=1024,
        widget=forms.TextInput(
            attrs={"placeholder": "s3://bucket/prefix/", "spellcheck": "false"}
        ),
    )

    def clean_uri(self) -> str:
        uri: str = self.cleaned_data["uri"].strip()
        if uri:
            validate_s3_uri(uri)
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
        choices=[("", "Any status"), *Scan.Status.choices], required=False
    )
    q = forms.CharField(label="Bucket or prefix", required=False, max_length=200)


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(
        choices=[("", "Any action"), *AuditEvent.Action.choices], required=False
    )
    actor = forms.CharField(label="User", required=False, max_length=150)
    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    q = forms.CharField(label="Text", required=False, max_length=200)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError(
                "“From” is after “To”: choose a start date on or before the end date."
            )
        return data

    def filter(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        """The events matching the valid filters (all of them while the form is unbound or invalid)."""
        if not self.is_valid():
            return events
        data = self.cleaned_data
        if data["action"]:
            events = events.filter(action=data["action"])
        if data["actor"]:
            events = events.filter(actor_username__icontains=data["actor"])
        if data["since"]:
            events = events.filter(created_at__date__gte=data["since"])
        if data["until"]:
            events = events.filter(created_at__date__lte=data["until"])
        if data["q"]:
            events = events.filter(summary__icontains=data["q"])
        return events


class JobFilterForm(forms.Form):
    COMPLETED_WITH_ERRORS = "completed_with_errors"

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
    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    external = forms.ChoiceField(
        label="Started",
        choices=[("", "Anywhere"), ("no", "In the dashboard"), ("yes", "Outside")],
        required=False,
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError(
                "“From” is after “To”: choose a start date on or before the end date."
            )
        return data

    def filter(self, jobs: QuerySet[ImportJob]) -> QuerySet[ImportJob]:
        """The jobs matching the valid filters (all of them while the form is unbound or invalid)."""
        if not self.is_valid():
            return jobs
        data = self.cleaned_data
        if data["datastore"]:
            jobs = jobs.filter(datastore=data["datastore"])
        if data["status"] == self.COMPLETED_WITH_ERRORS:
            jobs = jobs.filter(status=ImportJob.Status.COMPLETED).filter(
                Q(failure_count__gt=0)
                | Q(invalid_line_count__gt=0)
                | Q(customer_error_files__gt=0)
                | Q(server_error_files__gt=0)
            )
        elif data["status"]:
            jobs = jobs.filter(status=data["status"])
        if data["submitter"]:
            jobs = jobs.filter(submitted_by__username__icontains=data["submitter"])
        if data["since"]:
            jobs = jobs.filter(created_at__date__gte=data["since"])
        if data["until"]:
            jobs = jobs.filter(created_at__date__lte=data["until"])
        if data["external"]:
            jobs = jobs.filter(external=data["external"] == "yes")
        return jobs


class JobResultFilterForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[("", "Any outcome"), *ImportJobResult.Outcome.choices], required=False
    )
    q = forms.CharField(label="File", required=False, max_length=200)

    def filter(self, results: QuerySet[ImportJobResult]) -> QuerySet[ImportJobResult]:
        if not self.is_valid():
            return results
        if self.cleaned_data["outcome"]:
            results = results.filter(outcome=self.cleaned_data["outcome"])
        if self.cleaned_data["q"]:
            results = results.filter(input_file__icontains=self.cleaned_data["q"])
        return results
