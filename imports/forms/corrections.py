"""The composer's correction sheet: the upload, and "Write and map" of the sheet the page reviewed."""

from __future__ import annotations

from django import forms
from django.core.files.uploadedfile import UploadedFile

from imports.corrections.composer import MAX_UPLOAD_BYTES
from imports.forms.fields import DraftVersionForm

SUFFIXES = (".csv", ".xlsx")


class CorrectionsUploadForm(forms.Form):
    sheet_name = ""  # the uploaded file's name, once clean
    sheet = forms.FileField(
        label="Correction sheet",
        help_text="CSV (UTF-8) or XLSX (its first sheet) with a header row, at most 5 MB.",
        error_messages={
            "required": "choose a CSV or XLSX file.",
            "empty": "the file is empty; a sheet needs a header row and at least one row.",
        },
    )

    def clean_sheet(self) -> bytes:
        upload: UploadedFile[bytes] = self.cleaned_data["sheet"]
        name = upload.name or ""
        if not name.lower().endswith(SUFFIXES):
            raise forms.ValidationError(
                f"“{name[:80]}” is not a .csv or .xlsx file; save the sheet as CSV (UTF-8) or XLSX."
            )
        if (upload.size or 0) > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"the file is {(upload.size or 0) / 1024 / 1024:.1f} MB; a correction sheet may be at most "
                f"{MAX_UPLOAD_BYTES // 1024 // 1024} MB. Split it into several sheets."
            )
        self.sheet_name = name[:200]
        return bytes(upload.read(MAX_UPLOAD_BYTES + 1))


class CorrectionsWriteForm(DraftVersionForm):
    # The sheet the page showed: the one held for the user must be that one (imports/views/corrections.py).
    sha256 = forms.RegexField(
        regex=r"^[0-9a-f]{64}$",
        widget=forms.HiddenInput,
        error_messages={"invalid": "the page did not say which sheet it showed."},
    )
