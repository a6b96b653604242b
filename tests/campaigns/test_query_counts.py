"""The number of SQL statements of a campaign fan-out step, whatever its batch size: a query
per message would show here. The messages of a batch of COPY_FROM_ROWS or more go by COPY
(psycopg's copy(), which Django's cursor wrapper does not see), so that batch counts one
statement less than a small one."""

from __future__ import annotations

import pytest

from campaigns import services
from campaigns.models import CampaignRun
from tests.conftest import application_with_keys, subscription_create

from .conftest import campaign_create, run_messages

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("size", "statements"), [(10, 9), (50, 8)])
def test_a_fanout_step_takes_the_same_statements_for_any_batch_size(
    settings, django_assert_num_queries, size, statements
):
    settings.CAMPAIGN_BATCH_SIZE = size
    application = application_with_keys().application
    for _ in range(2 * size + 1):
        subscription_create(application)
    run = services.campaign_execute(campaign=campaign_create(application), actor="test")
    assert services.run_fanout_step(run_id=run.pk, step=0) is True  # counts the audience

    # The run with its campaign, application and template version; the batch of the audience
    # after the cursor; SAVEPOINT (the step's transaction); SAVEPOINT (message_send's);
    # the messages (an INSERT below COPY_FROM_ROWS, else COPY, not counted); the quota's
    # UPDATE; RELEASE; the run's compare-and-set UPDATE; RELEASE.
    with django_assert_num_queries(statements):
        assert services.run_fanout_step(run_id=run.pk, step=1) is True

    assert run_messages(CampaignRun.objects.get(pk=run.pk)).count() == 2 * size
