"""Sign-in throttling: failed sign-ins counted per user name and per client address.

Counts live in the database (`sign_in_failures`), so every web process shares them and a
restart forgets nothing. `limits.user_failures` wrong passwords for one user name within
`limits.window` lock that name for `limits.lock`, from every address; `limits.address_failures`
failures from one address (whatever the names) lock that address. While locked, a sign-in is
refused before any password is hashed. A success forgets the user name's failures, not the
address's (one good account must not reset a guesser's count). Each lock is returned, for the
audit trail. IPv6 addresses count per /64, the block one subscriber usually holds.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.models import SignInFailure

log = logging.getLogger(__name__)
USER, ADDRESS = "USER", "ADDRESS"


@dataclass(frozen=True)
class Limits:
    user_failures: int = 5
    address_failures: int = 20  # a branch office's collectors may share one address
    window: timedelta = timedelta(minutes=15)  # failures older than this are forgotten
    lock: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class Lock:
    kind: str
    subject: str
    failures: int
    until: datetime


def address_key(host: str | None) -> str:
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _keys(username: str, address: str) -> list[tuple[str, str]]:
    return [(USER, username.strip()[:64]), (ADDRESS, address[:64])]


def _is(kind: str, subject: str):  # type: ignore[no-untyped-def]
    return and_(SignInFailure.kind == kind, SignInFailure.subject == subject)


def locked_until(
    sessions: sessionmaker[Session], username: str, address: str, now: datetime
) -> datetime | None:
    """When the later of the user name's and the address's locks ends; None if neither is."""
    with sessions() as session:
        ends = session.scalars(
            select(SignInFailure.locked_until).where(
                or_(*(_is(k, s) for k, s in _keys(username, address))),
                SignInFailure.locked_until > now,
            )
        ).all()
    return max((e for e in ends if e is not None), default=None)


def record_failure(
    sessions: sessionmaker[Session], username: str, address: str, now: datetime, limits: Limits
) -> list[Lock]:
    """Count a failed sign-in against the name and the address; the locks it set, if any."""
    locks: list[Lock] = []
    limit = {USER: limits.user_failures, ADDRESS: limits.address_failures}
    with sessions.begin() as session:
        insert = (
            postgresql.insert
            if session.get_bind().dialect.name == "postgresql"
            else sqlite.insert  # the project's two databases
        )
        t = SignInFailure
        for kind, subject in _keys(username, address):  # always this order: no deadlock
            failures = session.execute(
                insert(t)
                .values(kind=kind, subject=subject, failures=1, last_failure_at=now)
                .on_conflict_do_update(
                    index_elements=[t.kind, t.subject],
                    set_={
                        "failures": case(
                            (t.last_failure_at < now - limits.window, 1), else_=t.failures + 1
                        ),
                        "last_failure_at": now,
                    },
                )
                .returning(t.failures)
            ).scalar_one()
            if failures < limit[kind]:
                continue
            until = now + limits.lock
            # Only one of several racing requests sets the lock (and audits it).
            done = session.execute(
                update(t)
                .where(_is(kind, subject), t.failures >= limit[kind])
                .values(failures=0, locked_until=until)
            )
            if done.rowcount:
                locks.append(Lock(kind, subject, failures, until))
    _forget_old(sessions, now - max(limits.window, limits.lock))
    return locks


def record_success(sessions: sessionmaker[Session], username: str) -> None:
    with sessions.begin() as session:
        session.execute(delete(SignInFailure).where(_is(USER, username.strip()[:64])))


def _forget_old(sessions: sessionmaker[Session], before: datetime) -> None:
    """Rows with no failure in the window and no lock left (housekeeping: may lose a race)."""
    try:
        with sessions.begin() as session:
            session.execute(delete(SignInFailure).where(SignInFailure.last_failure_at < before))
    except OperationalError as e:  # a deadlock or a busy database: next time
        log.info("sign-in failures not pruned this time: %s", e)
