"""The campaign pages' forms: the filter of a campaign's objects (and its export), and a plan from the browser."""

from __future__ import annotations

from collections.abc import Sequence

from django import forms
from django.core.exceptions import ValidationError

from imports.forms.fields import BoundedIntegerField, validate_typed_s3_uri
from imports.mappings.csvfile import CsvRefused, mappings_read_csv
from imports.mappings.rules import Mapping
from imports.models import CampaignObject, Datastore
from imports.validators import S3_URI_MAX_LENGTH

# More sources than this is a list better given to `campaign plan` from a file.
MAX_INPUTS = 50
# A mappings CSV of the campaign's largest plan (a mapping a study, tens of thousands of studies) fits in this.
MAX_MAPPINGS_BYTES = 10 * 1024 * 1024
# The service's refusals name the command line's options; on the page each goes to its field.
OPTION_FIELDS = {
    "--input": "inputs",
    "--mappings": "mappings",
    "--staging": "staging",
    "--max-files": "max_files",
    "--max-bytes": "max_bytes",
}


class CampaignObjectFilterForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[("", "Any outcome"), *CampaignObject.Outcome.choices],
        required=False,
        error_messages={
            "invalid_choice": "“%(value)s” is not an outcome; choose imported, failed, skipped, not_imported "
            "or pending."
        },
    )

    def outcome_chosen(self) -> str:
        """The outcome asked for, or "" for all (also when the filter is malformed: a list never refuses its
        own links; the export does, see imports.views.campaigns.campaign_export)."""
        return str(self.cleaned_data["outcome"]) if self.is_valid() else ""


class CampaignPlanForm(forms.Form):
    """`campaign plan` on the Campaigns page: the datastore, the scanned folders, the limits and the staging."""

    datastore = forms.ModelChoiceField(
        queryset=Datastore.objects.filter(enabled=True), empty_label=None
    )
    inputs = forms.CharField(
        label="Input prefixes",
        max_length=MAX_INPUTS * (S3_URI_MAX_LENGTH + 2),
        help_text="One scanned folder a line, such as s3://pacs-export/2019/.",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        error_messages={
            "required": "give at least one scanned folder, such as s3://pacs-export/2019/."
        },
    )
    max_files = BoundedIntegerField(
        label="Files a job at most",
        required=False,
        max_value=10**9,
        help_text="Default: the datastore's quota; it may be lower, not higher.",
    )
    max_bytes = BoundedIntegerField(
        label="Bytes a job at most",
        required=False,
        max_value=10**15,
        help_text="Default: the datastore's quota (10,000,000,000 is 10 GB).",
    )
    mappings = forms.FileField(
        label="Mappings CSV",
        required=False,
        help_text="Optional: studyInstanceUID, seriesInstanceUID, metadataFilePath, as `import_job corrections "
        "--write` and the composer's export write it; each file must lie under one of the folders.",
    )
    staging = forms.CharField(
        label="Staging prefix",
        required=False,
        max_length=S3_URI_MAX_LENGTH,
        help_text="Optional: where copies go when a folder holds more than one job takes; outside every input.",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )

    def clean_inputs(self) -> list[str]:
        lines = [
            line.strip()
            for line in str(self.cleaned_data["inputs"]).splitlines()
            if line.strip()
        ]
        if not lines:
            raise ValidationError(self.fields["inputs"].error_messages["required"])
        if len(lines) > MAX_INPUTS:
            raise ValidationError(
                f"{len(lines)} folders given; give at most {MAX_INPUTS} (more with `python manage.py campaign plan`)."
            )
        problems = []
        for number, line in enumerate(lines, start=1):
            try:
                validate_typed_s3_uri(line)
            except ValidationError as error:
                problems += [f"line {number}: {message}" for message in error.messages]
        if problems:
            raise ValidationError(problems)
        return lines

    def clean_mappings(self) -> list[Mapping]:
        upload = self.cleaned_data.get("mappings")
        if not upload:
            return []
        if upload.size > MAX_MAPPINGS_BYTES:
            raise ValidationError(
                f"the file is {upload.size:,} bytes; a mappings CSV may be at most {MAX_MAPPINGS_BYTES:,} bytes "
                "(larger with `python manage.py campaign plan --mappings`)."
            )
        try:
            return mappings_read_csv(upload.read())
        except CsvRefused as refused:
            raise ValidationError(
                [str(refused)]
                + [f"row {p.row}, {p.field}: {p.message}" for p in refused.problems]
            ) from None

    def clean_staging(self) -> str:
        uri = str(self.cleaned_data["staging"]).strip()
        if uri:
            validate_typed_s3_uri(uri)
        return uri

    def add_refusals(self, problems: Sequence[str]) -> None:
        """The service's reasons for refusing the plan, each on the field its option names."""
        for problem in problems:
            option, _, rest = problem.partition(" ")
            field = OPTION_FIELDS.get(option.rstrip(":"))
            self.add_error(field, rest if field else problem)
