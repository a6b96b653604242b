"""The garbage collector's settings for the long-running processes (gunicorn and Celery
workers), applied once their code is loaded.

That code (Django, DRF, Celery, our modules: 100,000-130,000 objects) never becomes garbage,
yet every full collection walks all of it while holding the GIL. In a Celery prefork child
that was 0.8-1.2 s of a 15 s campaign (a gc callback's count), a seventh of the campaign's
CPU; in a web process, 40-90 ms in which it answered nothing: the API's slowest requests.
`gc.freeze()` moves it to the permanent generation; a full collection then walks only what
was made since (10,000-25,000 objects, 7-21 ms in a web process).

A young generation of 10,000 allocations instead of 700 lets a batch's or a request's
short-lived objects die before a collection looks at them: about 1,100 -> 50 young
collections per worker child in a 100,000-message campaign, and 5 % less web CPU per request
(bench/RESULTS.md)."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def freeze_loaded_code() -> None:
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
