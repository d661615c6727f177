"""The state transitions of both ends of a session, as one table (the way h11's `_state.py` does it).

Theory of operation: a connection is in exactly one `State`. Everything that can happen to it is an
`Event`: a message or record received (upper case, e.g. `BOX_AUTH`, `ACCEPT record`), a call by the
application (`start()`, `accept()`), or the handshake timer. `TRANSITIONS[role][(state, event)]` is
the next state; the connection code looks every step up here, so this table *is* the state machine
that docs/protocol.md (section 4.3) prints. Three rules complete it:

* Rule 1 (fail closed): any error, local or remote, moves to FAILED from any state; FAILED and
  CLOSED refuse all input.
* Rule 2 (plaintext ERROR): an unauthenticated ERROR is honoured only where the table lists
  `plaintext ERROR`, i.e. before the receiver holds traffic keys. Anywhere else it is dropped
  unread, so an injected `7f0009` cannot end or mislabel a live session.
* Rule 3 (handshake deadline): a connection that is not ESTABLISHED `handshake_timeout_s` after it
  was created fails with `timeout` when its driver calls `handle_timer`.

Any (state, event) pair not in the table is `unexpected_message`.
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    start = "START"
    await_hello = "AWAIT_HELLO"
    await_secret = "AWAIT_SECRET"  # noqa: S105 (a state name, not a password)
    hello_sent = "HELLO_SENT"
    auth_sent = "AUTH_SENT"
    await_decision = "AWAIT_DECISION"
    established = "ESTABLISHED"
    closed = "CLOSED"
    failed = "FAILED"


class Event(Enum):
    start = "start()"
    hello_session = "HELLO(session)"
    hello_pairing = "HELLO(pairing)"
    provide_secret = "provide_secret()"  # noqa: S105
    box_auth = "BOX_AUTH"
    phone_auth = "PHONE_AUTH"
    accept = "accept()"
    refuse = "refuse()"
    accept_record = "ACCEPT record"
    traffic_record = "DATA | REKEY | KEEPALIVE record"
    close_record = "CLOSE record"
    error_record = "ERROR record"
    plaintext_error = "plaintext ERROR"
    close = "close()"


class Role(Enum):
    phone = "phone"
    box = "box"


S, E = State, Event

_ESTABLISHED = {
    (S.established, E.traffic_record): S.established,
    (S.established, E.close_record): S.closed,
    (S.established, E.error_record): S.failed,
    (S.established, E.close): S.closed,
}

TRANSITIONS: dict[Role, dict[tuple[State, Event], State]] = {
    Role.phone: {
        (S.start, E.start): S.hello_sent,
        (S.hello_sent, E.box_auth): S.auth_sent,
        (S.hello_sent, E.plaintext_error): S.failed,
        (S.auth_sent, E.accept_record): S.established,
        (S.auth_sent, E.error_record): S.failed,
        (S.start, E.close): S.closed,
        (S.hello_sent, E.close): S.closed,
        (S.auth_sent, E.close): S.closed,
        **_ESTABLISHED,
    },
    Role.box: {
        (S.await_hello, E.hello_session): S.auth_sent,
        (S.await_hello, E.hello_pairing): S.await_secret,
        (S.await_hello, E.plaintext_error): S.failed,
        (S.await_hello, E.refuse): S.failed,
        (S.await_secret, E.provide_secret): S.auth_sent,
        (S.auth_sent, E.phone_auth): S.await_decision,
        (S.auth_sent, E.plaintext_error): S.failed,
        (S.await_decision, E.accept): S.established,
        (S.await_decision, E.refuse): S.failed,
        (S.await_decision, E.error_record): S.failed,
        (S.await_hello, E.close): S.closed,
        (S.await_secret, E.close): S.closed,
        (S.auth_sent, E.close): S.closed,
        (S.await_decision, E.close): S.closed,
        **_ESTABLISHED,
    },
}

# States in which the connection holds traffic keys: it sends only records, reads only records.
KEYED: dict[Role, frozenset[State]] = {
    Role.phone: frozenset({S.auth_sent, S.established}),
    Role.box: frozenset({S.await_decision, S.established}),
}


def next_state(role: Role, state: State, event: Event) -> State | None:
    """The state after `event`, or None if the event is not allowed in `state`."""
    return TRANSITIONS[role].get((state, event))


def table_text() -> str:
    """The transition table as text (docs/protocol.md section 4.3 is checked against it)."""
    lines = []
    for role, table in TRANSITIONS.items():
        for (state, event), after in table.items():
            lines.append(f"{role.value:<5} {state.value:<14} {event.value:<32} -> {after.value}")
    return "\n".join(lines)
