"""Settings for the test suite: the project's, with a Redis database of the tests' own, so a
running `make run` (database 0) keeps its broker and cache."""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

from signal_project.settings import *  # noqa: E402, F403
