"""The metadata editor's forms: its fixed fields, what opens it, and its rows (their number varies)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from imports.forms.fields import BoundedIntegerField, DraftVersionForm


class EditorForm(DraftVersionForm):
    """The editor's fixed fields; the rows are parsed by editor_rows_from_post (their number varies)."""

    study = forms.CharField(max_length=64, widget=forms.HiddenInput)
    series = forms.CharField(max_length=64, required=False, widget=forms.HiddenInput)
    path = forms.CharField(
        label="File (relative to the input prefix)",
        max_length=1024,
        strip=False,
        error_messages={
            "required": "File: type the path of the file, such as metadata/study.json."
        },
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    loaded_etag = forms.CharField(
        max_length=128, required=False, widget=forms.HiddenInput
    )
    replace = forms.BooleanField(required=False, label="Replace the existing file")
    # The row a "Remove" button names, and the row an htmx check is for: one of the rows posted.
    remove = BoundedIntegerField(label="Remove", required=False)
    check_row = BoundedIntegerField(label="Row to check", required=False)

    def __init__(self, *args: Any, row_count: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("remove", "check_row"):
            self.fields[name].max_value = max(row_count, 1)  # type: ignore[attr-defined]


class EditorOpenForm(forms.Form):
    """What opens the editor (?study=&series=&path=&fix=), bounded as the editor's own fields are."""

    study = forms.CharField(label="Study", max_length=64, required=False)
    series = forms.CharField(label="Series", max_length=64, required=False)
    path = forms.CharField(label="File", max_length=1024, required=False, strip=False)
    fix = forms.CharField(label="Attribute to fix", max_length=64, required=False)


# Row numbers name the fields of one editor row: a few digits, never a value for the database.
_ROW_NUMBER = BoundedIntegerField(max_value=999_999)


def editor_rows_from_post(data: Any) -> list[Any]:
    """The rows of an editor form, in their order: `row` names each row's number, its fields follow it."""
    from imports.editor.rows import RowInput

    rows = []
    for number in data.getlist("row"):
        try:
            _ROW_NUMBER.clean(number)
        except ValidationError:
            continue
        prefix = f"rows-{number}-"
        if data.get(prefix + "kept") == "1":
            # A masked patient value: whatever else was sent for it, a save keeps the file's value.
            rows.append(
                RowInput(
                    tag=data.get(prefix + "tag", ""),
                    vr=data.get(prefix + "vr", "").strip().upper(),
                    kept=True,
                    shown=data.get(prefix + "shown", "")[:256],
                )
            )
            continue
        pn = tuple(
            data.get(f"{prefix}pn-{g}-{c}", "") for g in range(3) for c in range(5)
        )
        rows.append(
            RowInput(
                tag=data.get(prefix + "tag", ""),
                vr=data.get(prefix + "vr", "").strip().upper(),
                value=data.get(prefix + "value", ""),
                pn=pn if any(pn) or f"{prefix}pn-0-0" in data else (),
            )
        )
    return rows
