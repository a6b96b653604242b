"""Signals messaging sends; the apps above it connect to them in their AppConfig.ready()."""

from django.dispatch import Signal

# The broker came back without the tasks it held (see dispatch.broker_marker_present). The
# sweep has enqueued the pending messages again; receivers restart their own lost work.
broker_data_lost = Signal()

# Messages changed status: `transitions` counts them by (campaign_run_id, old, new), for
# messages of a campaign run only. Sent inside the transaction that wrote the statuses (a
# delivery batch, a client's report, a cancellation), so receivers write in it too.
message_statuses_changed = Signal()
