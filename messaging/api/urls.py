from django.urls import path

from . import inbox, messages, preferences, subscriptions, users

urlpatterns = [
    path("subscriptions", subscriptions.SubscriptionCollectionApi.as_view(), name="subscriptions"),
    path(
        "subscriptions/<uuid:subscription_id>",
        subscriptions.SubscriptionDetailApi.as_view(),
        name="subscription-detail",
    ),
    path("users/identify", users.UserIdentifyApi.as_view(), name="users-identify"),
    path("users/logout", users.UserLogoutApi.as_view(), name="users-logout"),
    path(
        "users/<path:external_user_id>/subscriptions",
        users.UserSubscriptionListApi.as_view(),
        name="user-subscriptions",
    ),
    path("users/<path:external_user_id>/export", users.UserExportApi.as_view(), name="user-export"),
    path(
        "users/<path:external_user_id>/preferences",
        preferences.UserPreferencesApi.as_view(),
        name="user-preferences",
    ),
    # Last of the users: an external id may hold slashes.
    path("users/<path:external_user_id>", users.UserDetailApi.as_view(), name="user-detail"),
    path("messages", messages.MessageCollectionApi.as_view(), name="messages"),
    path(
        "messages/<uuid:message_id>",
        messages.MessageDetailApi.as_view(),
        name="message-detail",
    ),
    path(
        "messages/<uuid:message_id>/status",
        messages.MessageStatusApi.as_view(),
        name="message-status",
    ),
    path(
        "messages/<uuid:message_id>/retry",
        messages.MessageRetryApi.as_view(),
        name="message-retry",
    ),
    # The in-app inbox (inbox/stream is the ASGI app's).
    path("inbox", inbox.InboxListApi.as_view(), name="inbox"),
    path("inbox/count", inbox.InboxCountApi.as_view(), name="inbox-count"),
    path("inbox/read-all", inbox.InboxReadAllApi.as_view(), name="inbox-read-all"),
    path("inbox/<uuid:item_id>/read", inbox.InboxItemReadApi.as_view(), name="inbox-item-read"),
    path(
        "inbox/<uuid:item_id>/unread", inbox.InboxItemUnreadApi.as_view(), name="inbox-item-unread"
    ),
    path(
        "inbox/<uuid:item_id>/archive",
        inbox.InboxItemArchiveApi.as_view(),
        name="inbox-item-archive",
    ),
]
