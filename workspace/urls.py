from django.urls import path

from workspace import stream, views

app_name = "workspace"

urlpatterns = [
    path("", views.home, name="home"),
    path("signin/", views.signin_page, name="signin"),
    path("signout/", views.signout, name="signout"),
    path("me/availability/", views.availability, name="availability"),
    path("inbox/", views.inbox, name="inbox"),
    path("inbox/rows/", views.inbox_rows, name="inbox-rows"),
    path("inbox/counts/", views.inbox_counts, name="inbox-counts"),
    path("live/", stream.events, name="live"),
    path("conversations/<uuid:conversation_id>/", views.conversation, name="conversation"),
    path(
        "conversations/<uuid:conversation_id>/thread/",
        views.conversation_thread,
        name="conversation-thread",
    ),
    path("conversations/<uuid:conversation_id>/reply/", views.reply, name="reply"),
    path("conversations/<uuid:conversation_id>/act/", views.act, name="act"),
    path("conversations/<uuid:conversation_id>/presence/", views.presence, name="presence"),
    path(
        "attachments/<uuid:attachment_id>/",
        views.attachment_download,
        name="attachment",
    ),
    path("calls/<uuid:interaction_id>/recording/", views.call_recording, name="recording"),
    path("patients/<uuid:patient_id>/timeline/", views.patient_timeline, name="timeline"),
    path("patients/<uuid:patient_id>/break-glass/", views.break_glass, name="break-glass"),
]
