from django.urls import path

from understanding import views

urlpatterns = [
    path(
        "conversations/<uuid:pk>/suggestions/",
        views.ConversationSuggestionsView.as_view(),
        name="conversation-suggestions",
    ),
]
