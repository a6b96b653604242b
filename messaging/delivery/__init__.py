"""The delivery pipeline. A batch: claim (claim.py), send through the adapters (send.py),
record the results (record.py), in one transaction; the stale-pending sweep (sweep.py)
hands lost and due work over again. Queues and publishing are messaging.dispatch's; the
tasks in messaging.tasks call the two entry points below."""

from .send import deliver_batch
from .sweep import pending_sweep

__all__ = ["deliver_batch", "pending_sweep"]
