from django.urls import path

from escalation import views

urlpatterns = [
    path(
        "escalation-rules/",
        views.EscalationRuleListCreateView.as_view(),
        name="escalation-rule-list",
    ),
    path(
        "escalation-rules/<int:pk>/",
        views.EscalationRuleDetailView.as_view(),
        name="escalation-rule-detail",
    ),
    path("escalations/", views.EscalationListView.as_view(), name="escalation-list"),
    path(
        "escalations/<uuid:pk>/acknowledge/",
        views.EscalationAcknowledgeView.as_view(),
        name="escalation-acknowledge",
    ),
    path(
        "conversations/<uuid:pk>/escalate/",
        views.ConversationEscalateView.as_view(),
        name="conversation-escalate",
    ),
    path(
        "staff/me/availability/",
        views.MyAvailabilityView.as_view(),
        name="staff-availability",
    ),
]
