"""The preference page and the one-click unsubscribe (messaging.preference_page): the signed
tokens, the List-Unsubscribe of a category's e-mail as the fake SMTP relay received it, the
one-click POST, the page's GET and POST, its languages, and recipients without a user."""

from __future__ import annotations

import re
import uuid
from html import unescape
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.test import Client
from django.utils import translation

from accounts.models import Category
from accounts.services import application_create
from core.channels import SPECS
from messaging import delivery
from messaging.links import links_for, unsubscribe_token, unsubscribe_url
from messaging.models import Message, MessageStatus, Subscription, User
from messaging.preference_links import (
    PreferenceToken,
    one_click_url,
    preference_token,
    preference_token_read,
    preferences_url,
)
from messaging.rules import rules_for
from messaging.services.messages import Content, Delivery, message_send
from tests.conftest import subscription_create

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://signal.example.com"
FORM = "application/x-www-form-urlencoded"
ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.PUBLIC_URL = PUBLIC_URL


@pytest.fixture
def mail_app(providers):
    """An application that sends e-mail through the fake SMTP relay, with two categories."""
    application = application_create(
        name="Kim's Shop",
        credentials={"Email": dict(providers.email_credentials("none").values)},
    )
    Category.objects.create(
        application=application,
        key="offers",
        name="Offers and news",
        translations={"ko": "혜택 및 소식"},
    )
    Category.objects.create(
        application=application, key="security", name="Security codes", required=True
    )
    return application


def address(prefix: str = "kim") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def send(application, subscriptions, category: str | None = "offers"):
    """Sends one message to each subscription (the recipients' rules of `category` applied)
    and delivers it in this process; the outcome of message_send."""
    outcome = message_send(
        application=application,
        subscriptions=subscriptions,
        content=Content(title="Spring sale", body="Everything is 20% off."),
        delivery=Delivery(),
        send_rules=rules_for(application=application, category=category),
    )
    if outcome.messages:
        delivery.deliver_batch([str(m.pk) for m in outcome.messages], queue="messages")
    return outcome


def received(providers, to: str) -> dict:
    [mail] = providers.smtp_messages(to)
    return mail


def one_click_path(mail: dict) -> str:
    """The path of a received e-mail's List-Unsubscribe URL (the test client's host is ours)."""
    url = mail["list_unsubscribe"].removeprefix("<").removesuffix(">")
    assert url.startswith(f"{PUBLIC_URL}/preferences/"), url
    return urlsplit(url).path


def page_path(token: str) -> str:
    return urlsplit(preferences_url(token)).path


def user_token(subscription) -> str:
    return preference_token(
        application_id=subscription.application_id, user_id=subscription.user_id
    )


def stored(subscription) -> dict:
    if subscription.user_id:
        return User.objects.get(pk=subscription.user_id).preferences
    return Subscription.objects.get(pk=subscription.pk).preferences


# --- Tokens ------------------------------------------------------------------------------------


def test_a_token_names_the_application_and_the_user_with_an_optional_category_and_channel():
    application_id, user_id = uuid.uuid4(), uuid.uuid4()

    page = preference_token(application_id=application_id, user_id=user_id)
    click = preference_token(
        application_id=application_id, user_id=user_id, category="offers", channel="Email"
    )

    assert preference_token_read(page) == PreferenceToken(application_id, user_id=user_id)
    assert preference_token_read(click) == PreferenceToken(
        application_id, user_id=user_id, category="offers", channel="Email"
    )
    # Short enough for a List-Unsubscribe header line, and plain URL characters.
    assert len(click) < 130 and re.fullmatch(r"[A-Za-z0-9._-]+", click), click
    assert one_click_url(click) == f"{PUBLIC_URL}/preferences/{click}/unsubscribe"
    assert preferences_url(page) == f"{PUBLIC_URL}/preferences/{page}"


def test_a_token_of_a_subscription_without_a_user_names_the_subscription():
    application_id, subscription_id = uuid.uuid4(), uuid.uuid4()

    token = preference_token(
        application_id=application_id, subscription_id=subscription_id, category="offers"
    )

    assert preference_token_read(token) == PreferenceToken(
        application_id, subscription_id=subscription_id, category="offers"
    )
    with pytest.raises(ValueError):
        preference_token(application_id=application_id)


def test_tampered_and_foreign_tokens_name_nobody():
    application_id, user_id = uuid.uuid4(), uuid.uuid4()
    token = preference_token(
        application_id=application_id, user_id=user_id, category="offers", channel="Email"
    )
    value, _sep, signature = token.rpartition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    other_category = value.replace(".offers.", ".receipts.")

    for bad in (
        f"{value}.{flipped}",
        f"{other_category}.{signature}",
        value,
        token[:-1],
        signing.Signer(sep=".").sign(value),  # SECRET_KEY without the salt
        unsubscribe_token(uuid.uuid4()),  # the other kind of signed link
        "",
        "nonsense",
    ):
        assert preference_token_read(bad) is None, bad


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("suffix", ["", "/unsubscribe"])
def test_a_tampered_token_is_a_404_page(app, method, suffix):
    subscription = subscription_create(
        app.application, type="Email", token=address(), external_user_id="kim"
    )
    token = preference_token(
        application_id=app.application.pk,
        user_id=subscription.user_id,
        category="offers",
        channel="Email",
    )

    path = f"/preferences/{token[:-2]}xx{suffix}"
    if method == "post":
        response = Client().post(path, ONE_CLICK, content_type=FORM)
    else:
        response = Client().get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "Link not valid" in response.content.decode()
    assert stored(subscription) == {}


def test_a_token_of_another_application_or_an_erased_user_is_a_404(app, other_app):
    subscription = subscription_create(
        app.application, type="Email", token=address(), external_user_id="kim"
    )
    foreign = preference_token(
        application_id=other_app.application.pk, user_id=subscription.user_id
    )
    mine = user_token(subscription)
    assert Client().get(page_path(mine)).status_code == 200

    assert Client().get(page_path(foreign)).status_code == 404
    User.objects.filter(pk=subscription.user_id).delete()
    assert Client().get(page_path(mine)).status_code == 404


def test_the_page_link_without_a_category_has_no_one_click(app):
    subscription = subscription_create(
        app.application, type="Email", token=address(), external_user_id="kim"
    )

    response = Client().post(page_path(user_token(subscription)) + "/unsubscribe", ONE_CLICK,
                             content_type=FORM)  # fmt: skip

    assert response.status_code == 404


# --- The header of a category's e-mail ----------------------------------------------------------


def test_an_email_of_a_category_carries_the_one_click_unsubscribe_of_that_category(
    mail_app, providers
):
    to = address()
    subscription = subscription_create(mail_app, type="Email", token=to, external_user_id="kim")

    outcome = send(mail_app, [subscription])

    [message] = outcome.messages
    assert Message.objects.get(pk=message.pk).status == MessageStatus.SUCCESSFUL
    mail = received(providers, to)
    assert mail["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    token = one_click_path(mail).removeprefix("/preferences/").removesuffix("/unsubscribe")
    assert preference_token_read(token) == PreferenceToken(
        mail_app.pk, user_id=subscription.user_id, category="offers", channel="Email"
    )
    # No mailto: the service has no mailbox of its own to offer.
    assert mail["list_unsubscribe"].count("<") == 1


def test_emails_without_a_category_or_of_a_required_one_carry_no_list_unsubscribe(
    mail_app, providers
):
    plain, required = address("plain"), address("required")
    subscriptions = [
        subscription_create(mail_app, type="Email", token=plain, external_user_id="a"),
        subscription_create(mail_app, type="Email", token=required, external_user_id="b"),
    ]

    send(mail_app, subscriptions[:1], category=None)
    send(mail_app, subscriptions[1:], category="security")

    for to in (plain, required):
        mail = received(providers, to)
        assert mail["list_unsubscribe"] is None and mail["list_unsubscribe_post"] is None


def test_a_subscription_without_a_user_gets_the_link_of_its_own_preferences(mail_app, providers):
    to = address("anon")
    subscription = subscription_create(mail_app, type="Email", token=to)
    assert subscription.user_id is None

    send(mail_app, [subscription])
    path = one_click_path(received(providers, to))

    token = path.removeprefix("/preferences/").removesuffix("/unsubscribe")
    assert preference_token_read(token) == PreferenceToken(
        mail_app.pk, subscription_id=subscription.pk, category="offers", channel="Email"
    )
    response = Client().post(path, ONE_CLICK, content_type=FORM)
    assert response.status_code == 200
    assert Subscription.objects.get(pk=subscription.pk).preferences == {
        "categories": {"offers": {"channels": {"Email": False}}}
    }
    # The rules read those preferences: the next e-mail of the category is left out.
    again = send(mail_app, [subscription])
    assert again.messages == [] and again.skipped_by_reason == {"opted_out": 1}


def test_a_campaign_email_links_to_its_category_when_recipients_may_turn_it_off():
    message = SimpleNamespace(
        id=uuid.uuid4(),
        application_id=uuid.uuid4(),
        subscription_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        channel="Email",
        campaign_run_id=uuid.uuid4(),
        category="offers",
    )

    [(name, url)] = links_for("Email", optional_categories={"offers"})(message).items()
    # A required (or deleted) category: the campaign's link that disables the subscription.
    fallback = links_for("Email", optional_categories={"tips"})(message)

    assert name == "unsubscribe_url"
    assert url == one_click_url(
        preference_token(
            application_id=message.application_id,
            user_id=message.user_id,
            category="offers",
            channel="Email",
        )
    )
    assert fallback == {"unsubscribe_url": unsubscribe_url(message.subscription_id)}


# --- One-click unsubscribe ---------------------------------------------------------------------


def test_the_one_click_post_turns_the_category_off_on_email_for_the_user(mail_app, providers):
    to = address()
    mail = subscription_create(mail_app, type="Email", token=to, external_user_id="kim")
    push = subscription_create(mail_app, external_user_id="kim")
    send(mail_app, [mail])
    path = one_click_path(received(providers, to))

    # As a mailbox provider POSTs it: no cookie, no CSRF token.
    response = Client(enforce_csrf_checks=True).post(path, ONE_CLICK, content_type=FORM)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert "Offers and news" in response.content.decode()
    assert stored(mail) == {"categories": {"offers": {"channels": {"Email": False}}}}
    # The user's e-mails of the category stop; its push messages of it do not.
    outcome = send(mail_app, [mail, push])
    assert [m.subscription_id for m in outcome.messages] == [push.pk]
    assert outcome.skipped_by_reason == {"opted_out": 1}


def test_the_one_click_post_is_idempotent_and_keeps_other_choices(mail_app):
    subscription = subscription_create(
        mail_app, type="Email", token=address(), external_user_id="kim"
    )
    User.objects.filter(pk=subscription.user_id).update(
        preferences={"channels": {"SMS": False}, "quiet_hours": {"start": "22:00", "end": "07:00"}}
    )
    path = urlsplit(
        one_click_url(
            preference_token(
                application_id=mail_app.pk,
                user_id=subscription.user_id,
                category="offers",
                channel="Email",
            )
        )
    ).path

    for _ in range(2):
        assert Client().post(path, ONE_CLICK, content_type=FORM).status_code == 200

    assert stored(subscription) == {
        "channels": {"SMS": False},
        "categories": {"offers": {"channels": {"Email": False}}},
        "quiet_hours": {"start": "22:00", "end": "07:00"},
    }


def test_a_get_of_the_one_click_url_changes_nothing_and_shows_a_button(mail_app, providers):
    to = address()
    subscription = subscription_create(mail_app, type="Email", token=to, external_user_id="kim")
    send(mail_app, [subscription])
    path = one_click_path(received(providers, to))

    response = Client().get(path)

    assert response.status_code == 200
    page = response.content.decode()
    assert '<form method="post">' in page and 'id="unsubscribe"' in page
    assert "Offers and news" in page
    assert stored(subscription) == {}

    # Its button: the same POST, answered with a page for a person, linking to the whole page.
    done = Client().post(path, {"List-Unsubscribe": "One-Click", "confirmed": "1"})
    assert done.status_code == 200
    assert done["Content-Type"] == "text/html; charset=utf-8"
    assert "Unsubscribed" in done.content.decode()
    assert stored(subscription) == {"categories": {"offers": {"channels": {"Email": False}}}}
    link = re.search(r'href="([^"]+)" id="page-link"', done.content.decode()).group(1)
    assert Client().get(link).status_code == 200

    # Once off, the GET says so and shows no button.
    again = Client().get(path).content.decode()
    assert "Unsubscribed" in again and "<form" not in again


def test_a_required_category_is_not_turned_off(mail_app):
    subscription = subscription_create(
        mail_app, type="Email", token=address(), external_user_id="kim"
    )
    token = preference_token(
        application_id=mail_app.pk, user_id=subscription.user_id, category="security"
    )

    response = Client().post(urlsplit(one_click_url(token)).path, ONE_CLICK, content_type=FORM)

    assert response.status_code == 200
    assert "cannot be turned off" in response.content.decode()
    assert stored(subscription) == {}


# --- The page ----------------------------------------------------------------------------------


def page_form(response) -> dict[str, str]:
    """What a browser submits from the page as it was rendered: hidden inputs, ticked
    enabled checkboxes and each select's selected option."""
    html = response.content.decode()
    form: dict[str, str] = {}
    for tag in re.findall(r"<input [^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        if not name or " disabled" in tag:
            continue
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                form[unescape(name.group(1))] = "on"
        else:
            form[name.group(1)] = unescape(re.search(r'value="([^"]*)"', tag).group(1))
    for name, options in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', html):
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        form[name] = chosen.group(1) if chosen else ""
    return form


def test_the_page_lists_categories_per_channel_of_the_users_subscriptions(mail_app):
    mail = subscription_create(mail_app, type="Email", token=address(), external_user_id="kim")
    subscription_create(mail_app, type="SMS", token="+14155550100", external_user_id="kim")
    subscription_create(mail_app, type="Email", token=address("other"), external_user_id="lee")

    response = Client().get(page_path(user_token(mail)))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Kim&#x27;s Shop" in page
    form = page_form(response)
    assert form == {
        "csrfmiddlewaretoken": form["csrfmiddlewaretoken"],
        "shown_channels": "Email,SMS",
        "shown_categories": "offers",
        "channel:Email": "on",
        "channel:SMS": "on",
        "category:offers": "on",
        "category:offers:Email": "on",
        "category:offers:SMS": "on",
        "quiet_start": "",
        "quiet_end": "",
        "quiet_timezone": "",
    }
    # A required category is shown on, and cannot be switched.
    assert re.search(r'id="category-security"[^>]* checked disabled', page)
    assert "Always sent" in page
    assert "<script" not in page


def test_saving_the_page_stores_the_choices_in_the_preferences_shape(mail_app):
    mail = subscription_create(mail_app, type="Email", token=address(), external_user_id="kim")
    subscription_create(mail_app, type="SMS", token="+14155550100", external_user_id="kim")
    client = Client(enforce_csrf_checks=True)
    path = page_path(user_token(mail))
    form = page_form(client.get(path))

    del form["channel:SMS"], form["category:offers:Email"]
    form.update(quiet_start="22:00", quiet_end="07:30", quiet_timezone="Asia/Seoul")
    response = client.post(path, form)

    assert response.status_code == 303
    assert response["Location"] == f"{path}?saved=1"
    assert stored(mail) == {
        "channels": {"SMS": False},
        "categories": {"offers": {"channels": {"Email": False}}},
        "quiet_hours": {"start": "22:00", "end": "07:30", "timezone": "Asia/Seoul"},
    }
    shown = client.get(response["Location"])
    assert 'id="saved"' in shown.content.decode()
    again = page_form(shown)
    assert "channel:SMS" not in again and "category:offers:Email" not in again
    assert (again["quiet_start"], again["quiet_end"], again["quiet_timezone"]) == (
        "22:00",
        "07:30",
        "Asia/Seoul",
    )

    # Turning all back on and the quiet hours off leaves nothing stored but the choices made.
    again.update({"channel:SMS": "on", "category:offers:Email": "on", "quiet_start": ""})
    del again["category:offers"]
    assert client.post(path, again).status_code == 303
    assert stored(mail) == {"categories": {"offers": {"enabled": False}}}


def test_saving_an_unchanged_page_stores_nothing(mail_app):
    mail = subscription_create(mail_app, type="Email", token=address(), external_user_id="kim")
    client = Client(enforce_csrf_checks=True)
    path = page_path(user_token(mail))

    assert client.post(path, page_form(client.get(path))).status_code == 303

    assert stored(mail) == {}


def test_the_page_needs_its_csrf_token(mail_app):
    mail = subscription_create(mail_app, type="Email", token=address(), external_user_id="kim")
    client = Client(enforce_csrf_checks=True)
    path = page_path(user_token(mail))
    form = page_form(client.get(path))
    del form["csrfmiddlewaretoken"], form["category:offers"]

    assert client.post(path, form).status_code == 403
    assert stored(mail) == {}


def test_a_category_made_after_the_page_was_loaded_is_left_as_it_is(mail_app):
    mail = subscription_create(mail_app, type="Email", token=address(), external_user_id="kim")
    client = Client(enforce_csrf_checks=True)
    path = page_path(user_token(mail))
    form = page_form(client.get(path))
    Category.objects.create(application=mail_app, key="tips", name="Tips")

    assert client.post(path, form).status_code == 303

    assert stored(mail) == {}


def test_the_page_of_a_subscription_without_a_user_saves_its_own_preferences(mail_app):
    subscription = subscription_create(mail_app, type="Email", token=address())
    token = preference_token(application_id=mail_app.pk, subscription_id=subscription.pk)
    client = Client(enforce_csrf_checks=True)
    path = page_path(token)
    form = page_form(client.get(path))
    assert form["shown_channels"] == "Email"

    del form["category:offers"]
    assert client.post(path, form).status_code == 303

    assert Subscription.objects.get(pk=subscription.pk).preferences == {
        "categories": {"offers": {"enabled": False}}
    }
    outcome = send(mail_app, [subscription])
    assert outcome.skipped_by_reason == {"opted_out": 1}


def test_a_subscriptions_token_follows_its_user_once_identified(mail_app):
    subscription = subscription_create(mail_app, type="Email", token=address())
    token = preference_token(
        application_id=mail_app.pk, subscription_id=subscription.pk, category="offers"
    )
    user = User.objects.create(application=mail_app, external_user_id="kim")
    Subscription.objects.filter(pk=subscription.pk).update(user=user)

    Client().post(urlsplit(one_click_url(token)).path, ONE_CLICK, content_type=FORM)

    assert User.objects.get(pk=user.pk).preferences == {
        "categories": {"offers": {"enabled": False}}
    }
    assert Subscription.objects.get(pk=subscription.pk).preferences == {}


def test_answers_allow_no_script_no_frame_and_no_cache(mail_app):
    mail = subscription_create(mail_app, type="Email", token=address(), external_user_id="kim")
    token = preference_token(
        application_id=mail_app.pk, user_id=mail.user_id, category="offers", channel="Email"
    )

    for path in (
        page_path(user_token(mail)),
        urlsplit(one_click_url(token)).path,
        "/preferences/x",
    ):
        response = Client().get(path)
        policy = response["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src" not in policy and "'unsafe-inline'" not in policy
        assert response["X-Frame-Options"] == "DENY"
        assert "no-store" in response["Cache-Control"]


def test_the_page_and_the_one_click_work_under_the_production_https_settings(mail_app, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.CSRF_COOKIE_SECURE = True
    mail = subscription_create(mail_app, type="Email", token=address(), external_user_id="kim")
    token = preference_token(
        application_id=mail_app.pk, user_id=mail.user_id, category="offers", channel="Email"
    )
    one_click = urlsplit(one_click_url(token)).path
    client = Client(enforce_csrf_checks=True)
    path = page_path(user_token(mail))

    # Plain HTTP is sent to HTTPS (PUBLIC_URL is https, as RFC 8058 wants).
    assert client.get(path).status_code == 301
    # The browser's form over HTTPS: the CSRF cookie (Secure) and its Origin.
    form = page_form(client.get(path, secure=True))
    del form["category:offers"]
    saved = client.post(path, form, secure=True, headers={"Origin": "https://testserver"})
    assert saved.status_code == 303, saved.content
    # A mailbox provider's POST: no cookie, no Origin.
    clicked = Client(enforce_csrf_checks=True).post(
        one_click, ONE_CLICK, content_type=FORM, secure=True
    )
    assert clicked.status_code == 200
    assert "Access-Control-Allow-Origin" not in clicked
    assert stored(mail) == {
        "categories": {"offers": {"enabled": False, "channels": {"Email": False}}}
    }


# --- Languages ---------------------------------------------------------------------------------


def test_the_page_speaks_the_subscriptions_language(mail_app):
    mail = subscription_create(
        mail_app, type="Email", token=address(), external_user_id="kim", language="ko"
    )

    response = Client().get(page_path(user_token(mail)))

    page = response.content.decode()
    assert response["Content-Language"] == "ko"
    assert '<html lang="ko">' in page
    assert "알림 설정" in page and "이메일" in page
    assert "혜택 및 소식" in page and "Offers and news" not in page
    # Without a translation, the category's own name.
    assert "Security codes" in page


def test_the_page_speaks_the_browsers_language_when_the_subscription_says_none(mail_app):
    mail = subscription_create(mail_app, type="Email", token=address(), external_user_id="kim")

    korean = Client().get(page_path(user_token(mail)), headers={"Accept-Language": "ko-KR,ko"})
    english = Client().get(page_path(user_token(mail)))
    elsewhere = Client().get(page_path(user_token(mail)), headers={"Accept-Language": "fr"})

    assert "알림 설정" in korean.content.decode()
    # The category names follow the subscription's language, which says none.
    assert "Offers and news" in korean.content.decode()
    assert "Notification preferences" in english.content.decode()
    assert "Notification preferences" in elsewhere.content.decode()
    assert elsewhere["Content-Language"] == "en"


def test_the_one_click_answer_names_the_category_in_the_subscriptions_language(mail_app):
    mail = subscription_create(
        mail_app, type="Email", token=address(), external_user_id="kim", language="ko-KR"
    )
    token = preference_token(
        application_id=mail_app.pk, user_id=mail.user_id, category="offers", channel="Email"
    )

    response = Client().post(urlsplit(one_click_url(token)).path, ONE_CLICK, content_type=FORM)

    assert "‘혜택 및 소식’" in response.content.decode()


def test_every_channel_label_has_its_korean():
    with translation.override("ko"):
        from messaging.preference_page import _channel_label

        for channel, spec in SPECS.items():
            assert _channel_label(channel) != spec.label or channel == "SMS", channel
