"""The live connection: server-sent events of channels_app.live, filtered to
the events of the caller's teams. Events carry ids only; the page fetches what
it shows through the audited fragments.

Each stream ends after LIVE_STREAM_SECONDS and the browser reconnects (its
EventSource does so by itself), so a stream never outlives the session that
opened it by long. The view answers with an async iterator under ASGI (the
production server) and a sync one under WSGI (runserver and the test server),
because Django would buffer the other kind whole."""

import json
import time

from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import StreamingHttpResponse
from django.views.decorators.http import require_GET

from channels_app import live
from channels_app.selectors import team_ids_of
from workspace.pages import CARE_ROLES, staff_page

LIVE_STREAM_SECONDS = 300
KEEPALIVE_SECONDS = 15
# The browser waits this long before reconnecting after a dropped stream.
RETRY_MILLISECONDS = 1500


def _frame(payload, team_ids):
    """The SSE frame for one published payload, or None when it is not for us."""
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    if event.get("team") not in team_ids:
        return None
    return f"event: {event['kind']}\ndata: {payload}\n\n"


class _Stream:
    def __init__(self, team_ids):
        self.team_ids = set(team_ids)
        self.started = time.monotonic()
        self.last_sent = self.started

    def expired(self):
        return time.monotonic() - self.started > LIVE_STREAM_SECONDS

    def opening(self):
        return f"retry: {RETRY_MILLISECONDS}\nevent: ready\ndata: {{}}\n\n"

    def frame_for(self, payload):
        """The frame to send after a wake: an event, a keep-alive, or None."""
        frame = _frame(payload, self.team_ids) if payload else None
        now = time.monotonic()
        if frame is None and now - self.last_sent >= KEEPALIVE_SECONDS:
            frame = ": keep-alive\n\n"
        if frame is not None:
            self.last_sent = now
        return frame

    def sync_frames(self):
        yield self.opening()
        for payload in live.broker().subscribe_sync(stop=self.expired):
            frame = self.frame_for(payload)
            if frame is not None:
                yield frame

    async def async_frames(self):
        yield self.opening()
        async for payload in live.broker().subscribe_async():
            if self.expired():
                return
            frame = self.frame_for(payload)
            if frame is not None:
                yield frame


@require_GET
@staff_page(*CARE_ROLES)
def events(request):
    stream = _Stream(team_ids_of(request.user) or [])
    # A stream lasts minutes; it must not hold a database connection meanwhile.
    connection.close()
    frames = stream.async_frames() if isinstance(request, ASGIRequest) else stream.sync_frames()
    response = StreamingHttpResponse(frames, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # Tells a buffering proxy (nginx) to pass each event on at once.
    response["X-Accel-Buffering"] = "no"
    return response
