from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import Field, Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from imports import datastores
from imports.audit.accounts import account_changes, account_snapshot, changes_text
from imports.audit.records import audit_record
from imports.forms import validate_s3_prefix
from imports.models import AuditEvent, Datastore
from imports.validators import HEALTHIMAGING_REGIONS


class AuditedAdminMixin:
    """Copies the admin's own log of additions, changes and deletions into the audit trail.

    Django's change message names the fields that changed (never their values, so no password); the
    fields that grant access (imports.audit.accounts) are recorded with their values before and after.
    """

    # Set by save_model from the row as stored, read by log_change once the groups are saved too.
    _before_attr = "_audit_account_before"

    def save_model(
        self, request: HttpRequest, obj: Model, form: Any, change: bool
    ) -> None:
        if change and obj.pk is not None:
            stored = type(obj)._default_manager.filter(pk=obj.pk).first()
            setattr(obj, self._before_attr, account_snapshot(stored) if stored else {})
        super().save_model(request, obj, form, change)  # type: ignore[misc]

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)  # type: ignore[misc]
        self._audit(
            request,
            obj,
            AuditEvent.Action.ACCOUNT_ADDED,
            "Added",
            entry,
            details={"after": account_snapshot(obj)},
        )
        return entry

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        entry = super().log_change(request, obj, message)  # type: ignore[misc]
        before = getattr(obj, self._before_attr, None)
        changes = (
            account_changes(before, account_snapshot(obj)) if before is not None else {}
        )
        self._audit(
            request,
            obj,
            AuditEvent.Action.ACCOUNT_CHANGED,
            "Changed",
            entry,
            details={"changes": changes},
            extra=changes_text(changes),
        )
        return entry

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        for obj in queryset:
            self._audit(
                request,
                obj,
                AuditEvent.Action.ACCOUNT_DELETED,
                "Deleted",
                None,
                details={"before": account_snapshot(obj)},
            )
        return super().log_deletions(request, queryset)  # type: ignore[misc]

    def _audit(
        self,
        request: HttpRequest,
        obj: Model,
        action: AuditEvent.Action,
        verb: str,
        entry: Any,
        *,
        details: dict[str, Any],
        extra: str = "",
    ) -> None:
        what = f"{obj._meta.verbose_name} “{obj}”"
        change = entry.get_change_message() if entry is not None else ""
        audit_record(
            actor=request.user,
            action=action,
            target=obj,
            summary=f"{verb} {what}"
            + (f": {change}" if change else "")
            + (f" ({extra})" if extra else ""),
            details=details,
        )


# django.contrib.auth registered these first (it comes before this app in INSTALLED_APPS).
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):  # type: ignore[type-arg]
    pass


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    pass


class DatastoreForm(ModelForm[Datastore]):
    """The model's S3 URI rules, and the prefix rule of the URIs users type: a draft starts from these."""

    class Meta:
        model = Datastore
        fields = [
            "input_s3_uri",
            "output_s3_uri",
        ]  # the admin's fieldsets name the rest

    def clean_input_s3_uri(self) -> str:
        uri: str = self.cleaned_data["input_s3_uri"]
        validate_s3_prefix(uri)
        return uri

    def clean_output_s3_uri(self) -> str:
        uri: str = self.cleaned_data["output_s3_uri"]
        validate_s3_prefix(uri)
        return uri


@admin.register(Datastore)
class DatastoreAdmin(admin.ModelAdmin[Datastore]):
    form = DatastoreForm
    list_display = [
        "name",
        "region",
        "datastore_id",
        "input_s3_uri",
        "output_s3_uri",
        "enabled",
        "updated_at",
    ]
    list_filter = ["enabled", "region"]
    search_fields = [
        "name",
        "datastore_id",
        "role_arn",
        "input_s3_uri",
        "output_s3_uri",
    ]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["check_connection"]
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        ("HealthImaging", {"fields": ["region", "datastore_id", "role_arn"]}),
        ("S3", {"fields": ["input_s3_uri", "output_s3_uri", "input_owner_account_id"]}),
        ("Patient data", {"fields": ["require_approval"]}),
        (
            "Service quotas",
            {
                "fields": [
                    "max_files_per_job",
                    "max_bytes_per_job",
                    "max_concurrent_jobs",
                    "start_jobs_per_second",
                ]
            },
        ),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def formfield_for_dbfield(
        self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> Any:
        if db_field.name == "region":
            # A list to pick from; the model's validator still names the allowed regions for anything else.
            kwargs["widget"] = forms.Select(
                choices=[("", "---------"), *[(r, r) for r in HEALTHIMAGING_REGIONS]]
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_model(
        self,
        request: HttpRequest,
        obj: Datastore,
        form: ModelForm[Datastore],
        change: bool,
    ) -> None:
        # The row as it is in the database: `obj` already holds the form's values.
        before = (
            datastores.datastore_snapshot(Datastore.objects.get(pk=obj.pk))
            if change
            else None
        )
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            datastores.datastore_record_saved(
                actor=request.user, datastore=obj, before=before
            )

    def delete_model(self, request: HttpRequest, obj: Datastore) -> None:
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.DATASTORE_DELETED,
            target=obj,
            summary=f"Deleted datastore “{obj.name}” ({obj.region}/{obj.datastore_id})",
            details={"before": datastores.datastore_snapshot(obj)},
        )
        super().delete_model(request, obj)

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[Datastore]
    ) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.action(description="Check connection", permissions=["check"])
    def check_connection(
        self, request: HttpRequest, queryset: QuerySet[Datastore]
    ) -> None:
        for datastore in queryset:
            for result in datastores.datastore_check_connection(
                datastore=datastore, actor=request.user
            ):
                level = messages.SUCCESS if result.ok else messages.ERROR
                self.message_user(
                    request,
                    f"{datastore.name} · {result.name}: {result.message}",
                    level,
                )

    def has_check_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("imports.check_datastore")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """Read-only: no add, change or delete, whatever the user's permissions (superusers included)."""

    list_display = ["created_at", "actor_username", "action", "ip", "summary"]
    list_filter = ["action"]
    search_fields = ["actor_username", "summary", "target_id"]
    date_hierarchy = "created_at"
    # `actor` is left out: it may name a deleted account; actor_username is what was recorded.
    readonly_fields = [
        "created_at",
        "actor_username",
        "actor_account",
        "action",
        "target_type",
        "target_id",
        "summary",
        "details",
        "ip",
        "user_agent",
        "previous_hash",
        "hash",
    ]
    fields = tuple(readonly_fields)

    @admin.display(description="account id")
    def actor_account(self, event: AuditEvent) -> str:
        return str(event.actor_id) if event.actor_id is not None else "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
