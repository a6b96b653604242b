"""Fixtures of the fakes' own tests: the running fake providers of the adapter tests."""

from tests.adapters.conftest import fakes  # noqa: F401 (a fixture, re-exported)
