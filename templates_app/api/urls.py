from django.urls import path

from . import kakao, views

urlpatterns = [
    path("templates", views.TemplateCollectionApi.as_view(), name="templates"),
    path(
        "templates/<uuid:template_id>",
        views.TemplateDetailApi.as_view(),
        name="template-detail",
    ),
    path(
        "templates/<uuid:template_id>/render",
        views.TemplateRenderApi.as_view(),
        name="template-render",
    ),
    path("kakao-templates", kakao.KakaoTemplateCollectionApi.as_view(), name="kakao-templates"),
]
