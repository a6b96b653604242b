from django.urls import path

from . import views

urlpatterns = [
    path("subscriptions", views.SubscriptionCollectionApi.as_view(), name="subscriptions"),
    path(
        "subscriptions/<uuid:subscription_id>",
        views.SubscriptionDetailApi.as_view(),
        name="subscription-detail",
    ),
    path("users/identify", views.UserIdentifyApi.as_view(), name="users-identify"),
    path("users/logout", views.UserLogoutApi.as_view(), name="users-logout"),
    path(
        "users/<path:external_user_id>/subscriptions",
        views.UserSubscriptionListApi.as_view(),
        name="user-subscriptions",
    ),
]

from . import message_views  # noqa: E402

urlpatterns += [
    path("messages", message_views.MessageCollectionApi.as_view(), name="messages"),
    path(
        "messages/<uuid:message_id>",
        message_views.MessageDetailApi.as_view(),
        name="message-detail",
    ),
    path(
        "messages/<uuid:message_id>/status",
        message_views.MessageStatusApi.as_view(),
        name="message-status",
    ),
]
