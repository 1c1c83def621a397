"""The campaign pages' forms: the filter of a campaign's objects (and its export)."""

from __future__ import annotations

from django import forms

from imports.models import CampaignObject


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
