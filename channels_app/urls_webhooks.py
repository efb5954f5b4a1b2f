from django.urls import path

from channels_app import voice, webhooks

urlpatterns = [
    path("twilio/sms/", webhooks.twilio_sms, name="webhook-twilio-sms"),
    path("twilio/sms/status/", webhooks.twilio_sms_status, name="webhook-twilio-sms-status"),
    path("twilio/voice/", voice.answer, name="webhook-twilio-voice"),
    path("twilio/voice/menu/", voice.menu, name="webhook-twilio-voice-menu"),
    path("twilio/voice/wait/", voice.wait, name="webhook-twilio-voice-wait"),
    path("twilio/voice/hold/", voice.hold, name="webhook-twilio-voice-hold"),
    path("twilio/voice/queue/", voice.queue_result, name="webhook-twilio-voice-queue"),
    path(
        "twilio/voice/callback/status/",
        voice.callback_status,
        name="webhook-twilio-voice-callback-status",
    ),
    path("twilio/voice/status/", voice.status, name="webhook-twilio-voice-status"),
    path("twilio/voice/recording/", voice.recording, name="webhook-twilio-voice-recording"),
    path(
        "twilio/voice/transcription/",
        voice.transcription,
        name="webhook-twilio-voice-transcription",
    ),
    path("email/inbound/", webhooks.email_inbound, name="webhook-email-inbound"),
]
