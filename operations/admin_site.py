"""The admin site of Automata-Signal: its index is the operators' console (operations.console)
above the usual list of models."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class SignalAdminSite(admin.AdminSite):
    site_header = "Automata-Signal"
    site_title = "Automata-Signal"
    index_title = "Console"
    # "View site" opens the API's documentation: the product has no other public page.
    site_url = "/api/v1/docs/"
    index_template = "operations/console.html"

    def index(self, request, extra_context=None):
        from .console import console_context

        context = {**console_context(), **(extra_context or {})}
        return super().index(request, extra_context=context)


class SignalAdminConfig(AdminConfig):
    """django.contrib.admin with SignalAdminSite as `admin.site` (INSTALLED_APPS lists this
    in its place), so every app's @admin.register lands on it."""

    default_site = "operations.admin_site.SignalAdminSite"
