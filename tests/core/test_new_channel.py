"""A new provider channel is its spec, its adapter (here tests.core.line_adapter), its fake
and its tests: the model fields, the credential checks and their display, readiness, the
registry and the preview's schema follow from the spec and what the adapter declares."""

from __future__ import annotations

import dataclasses
import uuid
from types import MappingProxyType, SimpleNamespace

import pytest

from accounts.credentials import CredentialsInvalid
from accounts.selectors import channels_ready_of, credential_secret_fields
from accounts.services import channel_credentials_clean, channel_credentials_set
from adapters import registry
from campaigns.api.serializers import channel_content_schema
from core import channels
from core.channels import SPECS
from messaging.links import links_for
from tests.core.line_adapter import LineAdapter

LINE = dataclasses.replace(
    SPECS["SMS"],
    type="Line",
    name="LINE",
    label="LINE",
    part=None,
    part_fields=MappingProxyType({}),
    adapter="tests.core.line_adapter.LineAdapter",
    links=(),
    content_check=None,
)


@pytest.fixture
def line(monkeypatch):
    specs = {**SPECS, "Line": LINE}
    monkeypatch.setattr(channels, "SPECS", specs)
    monkeypatch.setattr(channels, "CHANNELS", tuple(specs))
    registry.set_default_paths({spec.type: spec.adapter for spec in specs.values()})
    registry.reset_adapters()
    yield LINE
    registry.set_default_paths({spec.type: spec.adapter for spec in SPECS.values()})
    registry.reset_adapters()


def test_the_registry_builds_the_specs_adapter(line):
    assert registry.adapter_available("Line")
    assert isinstance(registry.get_adapter("Line"), LineAdapter)


def test_its_credentials_are_checked_by_its_adapter(line):
    assert channel_credentials_clean(channel="Line", values={"channel_secret": "s"}) == {
        "channel_secret": "s",
        "bot": "",
    }
    with pytest.raises(CredentialsInvalid, match="channel_secret"):
        channel_credentials_clean(channel="Line", values={"bot": "b"})
    assert channel_credentials_clean(channel="Line", values={}) == {}  # removes them


def test_its_secret_fields_are_its_adapters(line):
    assert credential_secret_fields("Line") == ("channel_secret",)


def test_it_is_ready_once_its_credentials_are_stored(db, line):
    from accounts.services import application_create

    application = application_create(name="line")
    assert channels_ready_of(application_id=application.pk)["Line"] is False

    channel_credentials_set(application=application, channel="Line", values={"channel_secret": "s"})

    assert channels_ready_of(application_id=application.pk)["Line"] is True


def test_the_preview_schema_shows_what_its_adapter_says_it_sends(line):
    schema = channel_content_schema()

    [form] = [form for form in schema["oneOf"] if form["description"].startswith("Line")]
    assert form["description"] == "Line: the text."
    assert form["properties"] == {"text": {"type": "string"}}


def test_it_gets_the_links_its_spec_names(line, monkeypatch, settings):
    settings.PUBLIC_URL = "https://signal.example"
    assert links_for("Line") is None

    both = dataclasses.replace(LINE, links=("status_callback", "unsubscribe_url"))
    monkeypatch.setitem(channels.SPECS, "Line", both)
    message = SimpleNamespace(
        id=uuid.uuid4(), subscription_id=uuid.uuid4(), campaign_run_id=1, category=""
    )

    assert set(links_for("Line")(message)) == {"status_callback", "unsubscribe_url"}
