from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom layer: domain errors, the API kit (error shape, parsers, strict serializers,
    pagination, the OpenAPI schema class), validation of untrusted input, the database engine,
    encryption at rest (its fields, key rotation and start-up check), the admin's shared
    forms and confirmation page, and the logs' shape and request ids. It imports no app of
    ours; at start-up it tells the adapters' registry each channel spec's adapter path
    (core.channels)."""

    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from adapters import registry

        from . import checks  # noqa: F401  (registers the system checks)
        from .channels import SPECS
        from .middleware import clear_request_context

        registry.set_default_paths({spec.type: spec.adapter for spec in SPECS.values()})
        request_finished.connect(clear_request_context, dispatch_uid="core.clear_request_context")
