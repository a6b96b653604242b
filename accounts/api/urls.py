from django.urls import path

from . import applications, audit_log, categories, keys

urlpatterns = [
    path(
        "applications/current",
        applications.ApplicationCurrentApi.as_view(),
        name="application-current",
    ),
    path("api-keys", keys.ApiKeyCollectionApi.as_view(), name="api-keys"),
    path("api-keys/<uuid:api_key_id>", keys.ApiKeyDetailApi.as_view(), name="api-key-detail"),
    path("audit-log", audit_log.AuditLogApi.as_view(), name="audit-log"),
    path("categories", categories.CategoryCollectionApi.as_view(), name="categories"),
    path("categories/<str:key>", categories.CategoryDetailApi.as_view(), name="category-detail"),
]
