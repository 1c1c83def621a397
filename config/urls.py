from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from config.auth import SignInForm


class FaviconRedirect(RedirectView):
    permanent = True

    def get_redirect_url(self, *args: object, **kwargs: object) -> str:
        # Resolved per request: with the manifest storage, static() needs collectstatic first.
        return static("favicon.svg")


urlpatterns = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            authentication_form=SignInForm, redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Browsers ask for /favicon.ico on pages that name none (the admin's).
    path(
        "favicon.ico",
        login_not_required(FaviconRedirect.as_view()),
    ),
    path("admin/", admin.site.urls),
    path("", include("imports.urls")),
]

# The site's own refusal and error pages (templates/403.html, 404.html, 500.html).
handler403 = "imports.views.errors.permission_denied"
handler404 = "imports.views.errors.page_not_found"
