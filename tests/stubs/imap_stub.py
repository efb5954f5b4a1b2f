"""A minimal IMAP4rev1 server on loopback, for testing the IMAP poller through the
real `imapclient` over a real socket.

Plain TCP only (the accounts under test have ``imap_use_ssl`` off). It speaks just
what a poller needs: CAPABILITY, NOOP, LOGIN, SELECT and EXAMINE (answering EXISTS,
UIDVALIDITY and UIDNEXT), UID SEARCH (``ALL`` and ``UID <set>``), UID FETCH (``UID``,
``RFC822``, ``BODY[]``, ``BODY.PEEK[]``, ``RFC822.SIZE``, ``FLAGS``), CLOSE and LOGOUT.
Anything else is answered ``BAD``. Sequence sets follow RFC 3501, including its trap:
``n:*`` with ``n`` above the highest UID still matches the highest message.

Tests create users (each with its own folders), inject messages, change a folder's
UIDVALIDITY the way a rebuilt server does, and read back every command received.
"""

from __future__ import annotations

import re
import socketserver
import threading
from dataclasses import dataclass, field

GREETING = b"* OK [CAPABILITY IMAP4rev1] IMAP4rev1 stub ready\r\n"
CAPABILITIES = "IMAP4rev1"

_LITERAL_AT_END = re.compile(rb"\{(\d+)(\+?)\}\r?\n?$")
_FETCH_ITEMS = {"UID", "RFC822", "BODY[]", "BODY.PEEK[]", "RFC822.SIZE", "FLAGS"}


@dataclass(frozen=True)
class RecordedCommand:
    """One command as received; `name` is upper case and includes a UID prefix
    ("UID FETCH"), `user` is who was logged in when it arrived."""

    user: str | None
    name: str
    args: tuple[str, ...]


@dataclass
class Folder:
    uidvalidity: int
    next_uid: int = 1
    messages: dict[int, bytes] = field(default_factory=dict)

    def uids(self) -> list[int]:
        return sorted(self.messages)


@dataclass
class _User:
    password: str
    folders: dict[str, Folder]


class ImapStub:
    """The server and its mailboxes. Start it with `start()` or as a context manager."""

    def __init__(self, *, host: str = "127.0.0.1"):
        self.host = host
        self._lock = threading.Lock()
        self._users: dict[str, _User] = {}
        self._commands: list[RecordedCommand] = []
        self._next_uidvalidity = 1700000000
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Life cycle ------------------------------------------------------------------------

    def start(self) -> ImapStub:
        handler = type("_BoundHandler", (_Handler,), {"stub": self})
        self._server = _Server((self.host, 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="imap-stub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ImapStub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stub is not started")
        return self._server.server_address[1]

    # What tests set up -----------------------------------------------------------------

    def add_user(self, username: str, password: str, *, folders=("INBOX",)) -> None:
        with self._lock:
            self._users[username] = _User(
                password=password,
                folders={name: Folder(uidvalidity=self._new_uidvalidity()) for name in folders},
            )

    def add_message(self, raw: bytes, *, user: str, folder: str = "INBOX") -> int:
        """Deliver `raw` to the folder; returns its UID."""
        with self._lock:
            box = self._users[user].folders[folder]
            uid = box.next_uid
            box.messages[uid] = bytes(raw)
            box.next_uid += 1
            return uid

    def change_uidvalidity(self, *, user: str, folder: str = "INBOX") -> int:
        """What a rebuilt or restored server does: a new UIDVALIDITY and every message
        numbered again from UID 1, so old UIDs mean nothing. Returns the new value."""
        with self._lock:
            box = self._users[user].folders[folder]
            box.uidvalidity = self._new_uidvalidity()
            box.messages = {n: raw for n, (_, raw) in enumerate(sorted(box.messages.items()), 1)}
            box.next_uid = len(box.messages) + 1
            return box.uidvalidity

    def folder(self, *, user: str, folder: str = "INBOX") -> Folder:
        with self._lock:
            return self._users[user].folders[folder]

    # What tests read -------------------------------------------------------------------

    @property
    def commands(self) -> list[RecordedCommand]:
        with self._lock:
            return list(self._commands)

    def commands_named(self, name: str, *, user: str | None = None) -> list[RecordedCommand]:
        return [
            c for c in self.commands if c.name == name.upper() and (user is None or c.user == user)
        ]

    def clear_commands(self) -> None:
        with self._lock:
            self._commands.clear()

    # Called from connection threads ----------------------------------------------------

    def _new_uidvalidity(self) -> int:
        self._next_uidvalidity += 1
        return self._next_uidvalidity

    def _record(self, command: RecordedCommand) -> None:
        with self._lock:
            self._commands.append(command)

    def _check_login(self, username: str, password: str) -> bool:
        with self._lock:
            user = self._users.get(username)
            return user is not None and user.password == password

    def _folder_snapshot(self, username: str, name: str) -> Folder | None:
        """A copy, so a connection sees one consistent state per command."""
        with self._lock:
            box = self._users[username].folders.get(name)
            if box is None:
                return None
            return Folder(box.uidvalidity, box.next_uid, dict(box.messages))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _ProtocolError(Exception):
    pass


class _Handler(socketserver.StreamRequestHandler):
    stub: ImapStub

    def setup(self) -> None:
        super().setup()
        self.user: str | None = None
        self.folder_name: str | None = None

    def handle(self) -> None:
        self._send(GREETING)
        while True:
            try:
                tokens = self._read_command()
            except (_ProtocolError, OSError):
                return
            if tokens is None:
                return
            if len(tokens) < 2:
                self._send(b"* BAD Missing tag or command\r\n")
                continue
            tag, name, args = tokens[0], tokens[1].upper(), tokens[2:]
            if name == "UID" and args:
                name, args = f"UID {args[0].upper()}", args[1:]
            self.stub._record(RecordedCommand(self.user, name, tuple(args)))
            try:
                if not self._dispatch(tag, name, args):
                    return
            except OSError:
                return

    # Reading ---------------------------------------------------------------------------

    def _read_command(self) -> list[str] | None:
        """One command as tokens: atoms, quoted strings (unescaped) and literals. The
        client is told to go on after each synchronising literal."""
        tokens: list[str] = []
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return None
            literal = _LITERAL_AT_END.search(line)
            text = line[: literal.start()] if literal else line.rstrip(b"\r\n")
            tokens.extend(_tokenize(text.decode("utf-8", errors="replace")))
            if not literal:
                return tokens
            size = int(literal.group(1))
            if not literal.group(2):
                self._send(b"+ Ready for literal data\r\n")
            data = self.rfile.read(size)
            if len(data) < size:
                raise _ProtocolError("connection closed inside a literal")
            tokens.append(data.decode("utf-8", errors="replace"))

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _tagged(self, tag: str, status: str, text: str) -> None:
        self._send(f"{tag} {status} {text}\r\n".encode())

    # Commands --------------------------------------------------------------------------

    def _dispatch(self, tag: str, name: str, args: list[str]) -> bool:
        """Answer one command; False ends the connection."""
        if name == "CAPABILITY":
            self._send(f"* CAPABILITY {CAPABILITIES}\r\n".encode())
            self._tagged(tag, "OK", "CAPABILITY completed")
        elif name == "NOOP":
            self._tagged(tag, "OK", "NOOP completed")
        elif name == "LOGOUT":
            self._send(b"* BYE IMAP4rev1 stub logging out\r\n")
            self._tagged(tag, "OK", "LOGOUT completed")
            return False
        elif name == "LOGIN":
            self._login(tag, args)
        elif self.user is None:
            self._tagged(tag, "BAD", "Log in first")
        elif name in ("SELECT", "EXAMINE"):
            self._select(tag, name, args)
        elif name == "CLOSE":
            self.folder_name = None
            self._tagged(tag, "OK", "CLOSE completed")
        elif self.folder_name is None:
            self._tagged(tag, "BAD", "No folder selected")
        elif name == "UID SEARCH":
            self._uid_search(tag, args)
        elif name == "UID FETCH":
            self._uid_fetch(tag, args)
        else:
            self._tagged(tag, "BAD", f"{name} is not supported by this stub")
        return True

    def _login(self, tag: str, args: list[str]) -> None:
        if len(args) != 2:
            self._tagged(tag, "BAD", "LOGIN takes a user name and a password")
        elif self.stub._check_login(args[0], args[1]):
            self.user = args[0]
            self._tagged(tag, "OK", "LOGIN completed")
        else:
            self._tagged(tag, "NO", "[AUTHENTICATIONFAILED] Invalid credentials")

    def _select(self, tag: str, name: str, args: list[str]) -> None:
        box = self.stub._folder_snapshot(self.user, args[0]) if len(args) == 1 else None
        if box is None:
            self.folder_name = None
            self._tagged(tag, "NO", "[NONEXISTENT] Unknown folder")
            return
        self.folder_name = args[0]
        self._send(
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
            + f"* {len(box.messages)} EXISTS\r\n".encode()
            + b"* 0 RECENT\r\n"
            + f"* OK [UIDVALIDITY {box.uidvalidity}] UIDs valid\r\n".encode()
            + f"* OK [UIDNEXT {box.next_uid}] Predicted next UID\r\n".encode()
        )
        mode = "READ-ONLY" if name == "EXAMINE" else "READ-WRITE"
        self._tagged(tag, "OK", f"[{mode}] {name} completed")

    def _uid_search(self, tag: str, args: list[str]) -> None:
        box = self.stub._folder_snapshot(self.user, self.folder_name)
        criteria = [a.upper() for a in args]
        if criteria[:1] == ["CHARSET"]:
            criteria = criteria[2:]
        matches = set(box.uids())
        while criteria:
            key = criteria.pop(0)
            if key == "ALL":
                continue
            if key == "UID" and criteria:
                matches &= uid_set(criteria.pop(0), box.uids())
                continue
            self._tagged(tag, "BAD", f"[CANNOT] search key {key} is not supported by this stub")
            return
        found = " ".join(str(uid) for uid in sorted(matches))
        self._send(f"* SEARCH{' ' if found else ''}{found}\r\n".encode())
        self._tagged(tag, "OK", "UID SEARCH completed")

    def _uid_fetch(self, tag: str, args: list[str]) -> None:
        if len(args) < 2:
            self._tagged(tag, "BAD", "UID FETCH takes a UID set and data items")
            return
        items = " ".join(args[1:]).strip("()").upper().split()
        unknown = [item for item in items if item not in _FETCH_ITEMS]
        if unknown:
            self._tagged(tag, "BAD", f"fetch item {unknown[0]} is not supported by this stub")
            return
        box = self.stub._folder_snapshot(self.user, self.folder_name)
        all_uids = box.uids()
        for uid in sorted(uid_set(args[0], all_uids)):
            raw = box.messages[uid]
            parts = [f"UID {uid}".encode()]
            for item in items:
                if item == "RFC822.SIZE":
                    parts.append(f"RFC822.SIZE {len(raw)}".encode())
                elif item == "FLAGS":
                    parts.append(b"FLAGS ()")
                elif item != "UID":
                    answered = "BODY[]" if item.startswith("BODY") else item
                    parts.append(f"{answered} {{{len(raw)}}}\r\n".encode() + raw)
            sequence = all_uids.index(uid) + 1
            self._send(f"* {sequence} FETCH (".encode() + b" ".join(parts) + b")\r\n")
        self._tagged(tag, "OK", "UID FETCH completed")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == " ":
            i += 1
        elif ch == '"':
            value, i = [], i + 1
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                value.append(text[i])
                i += 1
            tokens.append("".join(value))
            i += 1
        else:
            end = text.find(" ", i)
            end = len(text) if end == -1 else end
            tokens.append(text[i:end])
            i = end
    return tokens


def uid_set(spec: str, existing: list[int]) -> set[int]:
    """The existing UIDs a sequence set such as "1,4:6,9:*" names (RFC 3501 6.4.8:
    "*" is the highest UID, and a range is valid in either order)."""
    if not existing:
        return set()
    highest = existing[-1]
    wanted: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition(":")
        low = highest if first == "*" else int(first)
        high = low if not last else highest if last == "*" else int(last)
        low, high = min(low, high), max(low, high)
        wanted.update(uid for uid in existing if low <= uid <= high)
    return wanted
