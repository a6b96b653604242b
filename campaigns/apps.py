from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from messaging.signals import broker_data_lost, message_statuses_changed

        from . import services

        broker_data_lost.connect(
            services.runs_resume_after_broker_loss, dispatch_uid="campaigns-broker-lost"
        )
        message_statuses_changed.connect(
            services.run_stats_apply, dispatch_uid="campaigns-run-stats"
        )
