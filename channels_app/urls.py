from django.urls import path

from channels_app import views

urlpatterns = [
    path("channel-accounts/", views.ChannelAccountListView.as_view(), name="channel-account-list"),
    path(
        "channel-accounts/<uuid:pk>/",
        views.ChannelAccountDetailView.as_view(),
        name="channel-account-detail",
    ),
    path(
        "channel-accounts/<uuid:pk>/check-imap/",
        views.ChannelAccountImapCheckView.as_view(),
        name="channel-account-check-imap",
    ),
    path("portal/messages/", views.PortalMessageView.as_view(), name="portal-messages"),
    path("conversations/", views.ConversationListView.as_view(), name="conversation-list"),
    path(
        "conversations/<uuid:pk>/",
        views.ConversationDetailView.as_view(),
        name="conversation-detail",
    ),
    path(
        "conversations/<uuid:pk>/messages/",
        views.ConversationMessagesView.as_view(),
        name="conversation-messages",
    ),
    path(
        "conversations/<uuid:pk>/read/",
        views.ConversationReadView.as_view(),
        name="conversation-read",
    ),
    path(
        "conversations/<uuid:pk>/caller/",
        views.CallerContextView.as_view(),
        name="conversation-caller",
    ),
    path("callbacks/<uuid:pk>/call/", views.CallbackDialView.as_view(), name="callback-call"),
    path("teams/<int:team_id>/queue/", views.TeamQueueView.as_view(), name="team-queue"),
    path("inbox/counts/", views.InboxCountsView.as_view(), name="inbox-counts"),
    path(
        "patients/<uuid:patient_id>/timeline/",
        views.PatientTimelineView.as_view(),
        name="patient-timeline",
    ),
]
