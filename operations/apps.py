from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Celery's signals (the publish-time header, worker heartbeats, the process's metric
        # files) connected in every process that loads the project: web, workers and beat.
        from . import worker  # noqa: F401
