"""The practice's active channel accounts, kept in each process.

Every webhook looks up the account it was sent to, and a practice has a handful of
numbers, mailboxes and portal endpoints that change a few times a year, so each
process keeps them all (with their teams) instead of asking the database on every
request (contactcenter.process_copy: a change reaches every process within a
second; webhooks go on working with Redis down).
"""

from channels_app.models import ChannelAccount
from contactcenter.process_copy import ProcessCopy


def _load():
    # Ordered by id: the order the lookups' `.first()` used.
    return tuple(ChannelAccount.objects.select_related("team").filter(active=True).order_by("pk"))


_accounts = ProcessCopy("channel_accounts", _load).watch(ChannelAccount)


def active_accounts():
    """Every active channel account with its team, ordered by id."""
    return _accounts.get()


def account_for(*, kind, address):
    """The active account of this kind at this (normalised) address, or None."""
    for account in active_accounts():
        if account.kind == kind and account.address == address:
            return account
    return None


def accounts_of_kind(kind):
    return [account for account in active_accounts() if account.kind == kind]
