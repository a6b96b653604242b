from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom layer: domain errors, the API kit (error shape, parsers, strict serializers,
    pagination, the OpenAPI schema class), validation of untrusted input, the database engine,
    encryption at rest (its fields, key rotation and start-up check) and the admin's shared
    forms and confirmation page. It imports no app of ours."""

    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
