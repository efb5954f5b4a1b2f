"""A full verification of the audit chain run in the worker ("verify now" on the
compliance desk), with its progress kept in the cache for the page to poll.

The walk is compliance.chain.verify_chain, against the latest checkpoint the
sealer published (as `manage.py verify_audit_chain` runs it), without the API's
time budget: the worker has the time. Its progress (rows verified of the sealed
head's position) is written to the cache after each chunk of rows; the result is
written there too and, like the API's verification, as an audit row
(execute on audit_chain), which is what "last verification" reads afterwards.
One run at a time: asking while one is under way answers that run.
"""

import uuid
from datetime import datetime

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from compliance import selectors
from compliance.anchoring import checkpoint_sink
from compliance.chain import verify_chain
from compliance.models import AuditEvent
from compliance.services import audit_record

_RUN_KEY = "compliance:chain-verify:run:{}"
_CURRENT_KEY = "compliance:chain-verify:current"
_KEEP_SECONDS = 24 * 3600
# A run whose progress has not moved for this long lost its worker: a new one may start.
STALE_SECONDS = 10 * 60

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


def _now():
    return timezone.now().isoformat()


def run_state(run_id):
    """The run's state (a dict), or None for a run this cache does not know."""
    return cache.get(_RUN_KEY.format(run_id))


def _save(run_id, state):
    state["updated_at"] = _now()
    cache.set(_RUN_KEY.format(run_id), state, _KEEP_SECONDS)


def _is_stale(state):
    updated = datetime.fromisoformat(state["updated_at"])
    return (timezone.now() - updated).total_seconds() > STALE_SECONDS


def current_run():
    """The id of the run under way, if any."""
    run_id = cache.get(_CURRENT_KEY)
    if not run_id:
        return None
    state = run_state(run_id)
    if state is None or state["state"] in (DONE, FAILED) or _is_stale(state):
        return None
    return run_id


def verification_start(*, user):
    """Queue a full verification for `user` (on commit) and return its run id; the
    run under way when there is one."""
    from compliance.tasks import verify_audit_chain

    running = current_run()
    if running:
        return running
    run_id = uuid.uuid4().hex
    head = selectors.chain_head()
    _save(
        run_id,
        {
            "state": QUEUED,
            "checked": 0,
            "total": head[0] if head else 0,
            "started_at": _now(),
            "user_id": user.pk,
        },
    )
    cache.set(_CURRENT_KEY, run_id, _KEEP_SECONDS)
    verify_audit_chain.delay_on_commit(run_id, user.pk)
    return run_id


def verification_run(*, run_id, user_id):
    """The worker's part: walk the chain, reporting progress; record the result."""
    state = run_state(run_id) or {"total": 0, "started_at": _now(), "user_id": user_id}
    state.update(state=RUNNING, checked=0)
    _save(run_id, state)

    def progress(count):
        state["checked"] = count
        _save(run_id, state)

    try:
        result = verify_chain(checkpoint=checkpoint_sink().latest(), progress=progress)
    except Exception:
        state.update(state=FAILED)
        _save(run_id, state)
        raise
    state.update(
        state=DONE,
        checked=result.count,
        ok=result.ok,
        complete=result.complete,
        count=result.count,
        head_hash=result.head_hash,
        head_position=result.head_position,
        broken_id=result.broken_id,
        broken_position=result.broken_position,
        reason=result.reason,
        detail=result.detail,
        finished_at=_now(),
    )
    user = get_user_model().objects.filter(pk=user_id).first()
    audit_record(
        action=AuditEvent.Action.EXECUTE,
        resource_type="audit_chain",
        resource_id=run_id,
        purpose_of_use=AuditEvent.PurposeOfUse.HCOMPL,
        actor=user,
        details={
            "ok": result.ok,
            "complete": result.complete,
            "count": result.count,
            "broken_id": result.broken_id,
            "via": "worker",
        },
    )
    _save(run_id, state)
    return result
