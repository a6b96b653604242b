from django.urls import path

from . import applications

urlpatterns = [
    path(
        "applications/current",
        applications.ApplicationCurrentApi.as_view(),
        name="application-current",
    ),
]
