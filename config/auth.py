"""Authentication: Django's ModelBackend, with the signed-in user and its permissions read in one query.

Every request a signed-in browser makes loads its user, and nearly every view asks a permission (the
navigation bar alone asks one), which ModelBackend answers with two more queries: the user's own
permissions, then its groups'. The job status fragment is polled every 2 s by everyone watching a job,
so those three queries were most of its work. Here they are one.

Nothing is cached beyond the request, exactly as with ModelBackend: the user object, and the permission
set on it, live as long as one request. A role changed in the admin applies from the next request on,
and there is no cache to invalidate.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm, UsernameField
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.models import Model


def _fk(through: Any, model: type[Model]) -> str:
    """The column of a many-to-many table that points at `model`."""
    return str(
        next(
            f.column
            for f in through.fields
            if f.is_relation and f.related_model is model
        )
    )


@cache
def _user_with_permissions_sql(alias: str) -> str:
    """The user's row once per permission it holds, directly or through a group (once, with NULLs, if none).

    Built from the models' table and column names, so a renamed table or a swapped user model follows.
    """
    q = connections[alias].ops.quote_name
    user_model = get_user_model()
    fields = list(user_model._meta.concrete_fields)
    user_perms = user_model._meta.get_field(
        "user_permissions"
    ).remote_field.through._meta  # type: ignore[union-attr]
    user_groups = user_model._meta.get_field("groups").remote_field.through._meta  # type: ignore[union-attr]
    group_perms = Group._meta.get_field("permissions").remote_field.through._meta  # type: ignore[union-attr]
    perm_table, ctype_table = (
        q(Permission._meta.db_table),
        q(ContentType._meta.db_table),
    )
    up_user, ug_user = q(_fk(user_perms, user_model)), q(_fk(user_groups, user_model))
    holders = (
        f"SELECT up.{up_user} AS holder, ct.app_label AS perm_app, p.codename AS perm_code "
        f"FROM {q(user_perms.db_table)} up "
        f"JOIN {perm_table} p ON p.id = up.{q(_fk(user_perms, Permission))} "
        f"JOIN {ctype_table} ct ON ct.id = p.content_type_id "
        f"WHERE up.{up_user} = %s "
        "UNION "
        f"SELECT ug.{ug_user}, ct.app_label, p.codename "
        f"FROM {q(user_groups.db_table)} ug "
        f"JOIN {q(group_perms.db_table)} gp ON gp.{q(_fk(group_perms, Group))} = ug.{q(_fk(user_groups, Group))} "
        f"JOIN {perm_table} p ON p.id = gp.{q(_fk(group_perms, Permission))} "
        f"JOIN {ctype_table} ct ON ct.id = p.content_type_id "
        f"WHERE ug.{ug_user} = %s"
    )
    pk = q(str(user_model._meta.pk.column))
    columns = ", ".join(f"u.{q(str(f.column))}" for f in fields)
    sql = (
        f"SELECT {columns}, perms.perm_app, perms.perm_code "
        f"FROM {q(user_model._meta.db_table)} u "
        f"LEFT JOIN ({holders}) perms ON perms.holder = u.{pk} "
        f"WHERE u.{pk} = %s"
    )
    return sql


class OneQueryModelBackend(ModelBackend):
    """ModelBackend whose get_user() also fills the permission cache that has_perm() reads."""

    def get_user(self, user_id: Any) -> User | None:
        user_model = get_user_model()
        try:
            pk = user_model._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        alias = router.db_for_read(user_model)
        sql = _user_with_permissions_sql(alias)
        # raw() converts each column as the ORM would (SQLite's booleans and datetimes); one instance per row.
        rows = list(
            user_model._default_manager.db_manager(alias).raw(sql, [pk, pk, pk])
        )
        if not rows:
            return None
        user: User = rows[0]
        if not self.user_can_authenticate(user):
            return None
        # A superuser holds every permission; ModelBackend lists them itself when first asked.
        if not getattr(user, "is_superuser", False):
            # The attribute ModelBackend.get_all_permissions() fills on first use and reads afterwards.
            user._perm_cache = {  # type: ignore[attr-defined]
                f"{row.perm_app}.{row.perm_code}"  # type: ignore[attr-defined]
                for row in rows
                if row.perm_code is not None  # type: ignore[attr-defined]
            }
        return user


class SignInForm(AuthenticationForm):
    """Django's sign-in form, with the user name's length enforced.

    AuthenticationForm sets max_length on its user name field after the field is built, so the limit reached the
    HTML but no validator: a 300-character name went on to authenticate(), and django-axes wrote it into its
    varchar(255) (a 500 on PostgreSQL). A name longer than any account can have is refused before any lookup.
    """

    username = UsernameField(
        max_length=User._meta.get_field("username").max_length,
        widget=forms.TextInput(attrs={"autofocus": True}),
        error_messages={
            "max_length": "at most %(limit_value)d characters (this one has %(show_value)d)."
        },
    )
