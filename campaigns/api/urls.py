from django.urls import path

from . import views

urlpatterns = [
    path("campaigns", views.CampaignCollectionApi.as_view(), name="campaigns"),
    path("campaigns/<uuid:campaign_id>", views.CampaignDetailApi.as_view(), name="campaign"),
    path(
        "campaigns/<uuid:campaign_id>/execute",
        views.CampaignExecuteApi.as_view(),
        name="campaign-execute",
    ),
    path(
        "campaigns/<uuid:campaign_id>/cancel",
        views.CampaignCancelApi.as_view(),
        name="campaign-cancel",
    ),
    path(
        "campaigns/<uuid:campaign_id>/pause",
        views.CampaignPauseApi.as_view(),
        name="campaign-pause",
    ),
    path(
        "campaigns/<uuid:campaign_id>/resume",
        views.CampaignResumeApi.as_view(),
        name="campaign-resume",
    ),
    path(
        "campaigns/<uuid:campaign_id>/preview",
        views.CampaignPreviewApi.as_view(),
        name="campaign-preview",
    ),
    path(
        "campaigns/<uuid:campaign_id>/runs",
        views.CampaignRunListApi.as_view(),
        name="campaign-runs",
    ),
]
