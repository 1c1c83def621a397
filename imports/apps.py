from __future__ import annotations

from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "imports"
    verbose_name = "HealthImaging imports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import signals

        from imports.audit import records as audit

        signals.user_logged_in.connect(
            audit.on_user_logged_in, dispatch_uid="audit-signed-in"
        )
        signals.user_logged_out.connect(
            audit.on_user_logged_out, dispatch_uid="audit-signed-out"
        )
        signals.user_login_failed.connect(
            audit.on_user_login_failed, dispatch_uid="audit-sign-in-failed"
        )
        from config.middleware import mark_activity_on_sign_in

        signals.user_logged_in.connect(
            mark_activity_on_sign_in, dispatch_uid="session-idle-clock"
        )
