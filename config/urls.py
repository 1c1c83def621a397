from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView

# Resolved per request: with the manifest storage, static() needs collectstatic to have run.
lazy_static = lazy(static, str)

urlpatterns = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Browsers ask for /favicon.ico on pages that name none (the admin's).
    path(
        "favicon.ico",
        login_not_required(
            RedirectView.as_view(url=static("favicon.svg"), permanent=True)
        ),
    ),
    path("admin/", admin.site.urls),
    path("", include("imports.urls")),
]
