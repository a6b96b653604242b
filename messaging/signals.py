"""Signals messaging sends; the apps above it connect to them in their AppConfig.ready()."""

from django.dispatch import Signal

# The broker came back without the tasks it held (see outbox.broker_marker_present). The
# sweep has enqueued the pending messages again; receivers restart their own lost work.
broker_data_lost = Signal()
