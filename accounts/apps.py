from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Applications (the tenants), their API keys and authentication, quotas and provider
    credentials. Above core; below templates_app, messaging and campaigns."""

    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled

        from .cors import cors_request_allowed

        check_request_enabled.connect(cors_request_allowed, dispatch_uid="accounts.cors")
