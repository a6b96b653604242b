from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom layer: domain errors, the API kit (error shape, parsers, strict serializers,
    pagination, the OpenAPI schema class), validation of untrusted input, the database engine,
    encryption at rest (its fields, key rotation and start-up check) and the admin's shared
    forms and confirmation page. It imports no app of ours; at start-up it tells the adapters'
    registry each channel spec's adapter path (core.channels)."""

    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from adapters import registry

        from . import checks  # noqa: F401  (registers the system checks)
        from .channels import SPECS

        registry.set_default_paths({spec.type: spec.adapter for spec in SPECS.values()})
