from __future__ import annotations

from django.apps import AppConfig


class LocalAWSConfig(AppConfig):
    """Registered only for its `localaws` management command; the app has no models."""

    name = "localaws"
    label = "localaws"
    verbose_name = "Local AWS stand-in"
