from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Applications (the tenants), their API keys and authentication, quotas and provider
    credentials. Above core; below templates_app, messaging and campaigns."""

    name = "accounts"
    verbose_name = "Accounts"
