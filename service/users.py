"""Users, their roles, sign-in sessions, and what each role may see.

- SUPERVISOR: every case of the branches listed on the user, and every action on them.
- COLLECTOR: the cases they are assigned to (as first or second collector); visit reports,
  plan proposals and signature confirmations on those.
- BACK_OFFICE: the feeds (loan export, payments); no case pages.
- BRANCH_HEAD: a branch's head (网点负责人): alerted by SMS when a supervisor has not
  acknowledged a safety alert (their mobile on the user); no case pages yet.
- LEGAL: legal review before escalation (issue 15).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Branch, Collector, User, WebSession
from domain.phones import normalize_phone
from service.passwords import hash_password, verify_password

SESSION_LIFETIME = timedelta(hours=12)


class Role(StrEnum):
    SUPERVISOR = "SUPERVISOR"
    COLLECTOR = "COLLECTOR"
    BACK_OFFICE = "BACK_OFFICE"
    BRANCH_HEAD = "BRANCH_HEAD"
    LEGAL = "LEGAL"


class UserError(ValueError):
    """A user that cannot be created as asked; the message names the field."""


@dataclass(frozen=True)
class Principal:
    """The signed-in user, as the pages and the audit trail see them."""

    username: str
    role: Role
    branches: tuple[str, ...] = ()
    collector_id: str | None = None
    display_name: str = ""
    csrf_token: str = ""

    def may_see(self, branch: str, collectors: list[str] | tuple[str, ...]) -> bool:
        if self.role in (Role.SUPERVISOR, Role.BRANCH_HEAD, Role.LEGAL):  # LEGAL: dead ends
            return branch in self.branches
        if self.role == Role.COLLECTOR:
            return self.collector_id is not None and self.collector_id in collectors
        return False

    @property
    def actor(self) -> str:
        """The name written into the case's history: the collector id for collectors."""
        return (
            self.collector_id
            if self.role == Role.COLLECTOR and self.collector_id
            else (self.username)
        )


def _principal(user: User, csrf: str = "") -> Principal:
    return Principal(
        user.username,
        Role(user.role),
        tuple(b for b in user.branches.split(",") if b),
        user.collector_id,
        user.display_name,
        csrf,
    )


def create_user(
    session: Session,
    username: str,
    password: str,
    role: Role | str,
    branches: list[str] | None = None,
    collector_id: str | None = None,
    display_name: str = "",
    mobile: str | None = None,
) -> User:
    username = username.strip()
    if not username or len(username) > 64:
        raise UserError("username: 1 to 64 characters")
    if session.scalar(select(User).where(User.username == username)):
        raise UserError(f"username: {username!r} exists already")
    try:
        role = Role(role)
    except ValueError:
        raise UserError(f"role: one of {', '.join(Role)}") from None
    branches = branches or []
    known = set(session.scalars(select(Branch.code)))
    for code in branches:
        if code not in known:
            raise UserError(f"branches: unknown branch {code!r}")
    if role in (Role.SUPERVISOR, Role.BRANCH_HEAD, Role.LEGAL) and not branches:
        raise UserError(f"branches: a {role.value.lower()} needs at least one branch")
    if mobile:
        try:
            mobile = normalize_phone(mobile)
        except ValueError:
            raise UserError("mobile: not a mobile number (11 digits, or +country)") from None
    if role == Role.COLLECTOR:
        collector = session.get(Collector, collector_id or "")
        if collector is None:
            raise UserError(f"collector_id: unknown collector {collector_id!r}")
        branches = [collector.branch_code]
    user = User(
        username=username,
        display_name=display_name or username,
        password_hash=hash_password(password),
        role=role.value,
        branches=",".join(branches),
        collector_id=collector_id if role == Role.COLLECTOR else None,
        active=True,
        created_at=datetime.now(UTC),
        mobile=mobile or None,
    )
    session.add(user)
    session.flush()
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(
    sessions: sessionmaker[Session], username: str, password: str
) -> tuple[str, Principal] | None:
    """A new session token for a right password, else None (the same for unknown users)."""
    with sessions.begin() as session:
        user = session.scalar(select(User).where(User.username == username.strip()))
        if user is None or not user.active:
            verify_password(password, _dummy_hash())  # same cost: no user enumeration by timing
            return None
        if not verify_password(password, user.password_hash):
            return None
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        session.add(
            WebSession(
                token_sha256=_digest(token),
                user_id=user.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
        # Expired sessions of this user go when they sign in again.
        session.execute(
            delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at < now)
        )
        return token, _principal(user, csrf)


def principal_for(sessions: sessionmaker[Session], token: str) -> Principal | None:
    with sessions() as session:
        row = session.get(WebSession, _digest(token))
        if row is None or row.expires_at < datetime.now(UTC):
            return None
        user = session.get(User, row.user_id)
        if user is None or not user.active:
            return None
        return _principal(user, row.csrf_token)


def principal_named(sessions: sessionmaker[Session], username: str) -> Principal | None:
    """The active user of this name, as the CLI acts for them (role and name from the row,
    never from what the caller types)."""
    with sessions() as session:
        user = session.scalar(select(User).where(User.username == username.strip()))
        if user is None or not user.active:
            return None
        return _principal(user)


def sign_out(sessions: sessionmaker[Session], token: str) -> None:
    with sessions.begin() as session:
        session.execute(delete(WebSession).where(WebSession.token_sha256 == _digest(token)))


@functools.cache
def _dummy_hash() -> str:
    """Made on first need, not at import (scrypt takes tens of milliseconds)."""
    return hash_password("not-a-real-password")
