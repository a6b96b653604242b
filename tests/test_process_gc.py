"""The web and worker processes move their loaded code out of the collector's way."""

from __future__ import annotations

import gc
import runpy
from pathlib import Path

import pytest

from signal_project import celery as celery_module
from signal_project.gc_settings import YOUNG_THRESHOLD

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def collector_state():
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_a_celery_worker_freezes_its_loaded_code_and_collects_young_objects_less_often(
    collector_state,
):
    assert gc.get_freeze_count() == 0
    celery_module._collect_less()
    assert gc.get_freeze_count() > 10_000  # Django, Celery and our modules
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD == 10_000


def test_a_gunicorn_worker_freezes_the_loaded_app(collector_state):
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert gc.get_freeze_count() == 0
    config["post_worker_init"](worker=None)
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
