from __future__ import annotations

import re
from typing import Any

from django import forms
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from imports.models import AuditEvent, Datastore, Scan
from imports.validators import (
    S3_URI_MAX_LENGTH,
    split_s3_uri,
    validate_job_name,
    validate_output_s3_uri,
    validate_s3_uri,
)


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


TARGET_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


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

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error(
                "until",
                "“To” is before “From”: choose an end date on or after the start date.",
            )
        return data

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
            validate_s3_uri(uri)
        return uri

    def clean_output_s3_uri(self) -> str:
        uri: str = self.cleaned_data["output_s3_uri"].strip()
        if uri:
            validate_output_s3_uri(uri)
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


class DraftVersionForm(forms.Form):
    """Every change to a draft carries the version the user saw (see drafts._editing)."""

    version = forms.IntegerField(min_value=1, widget=forms.HiddenInput)


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
        validate_output_s3_uri(uri)
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
    mapping = forms.IntegerField(min_value=1)


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
