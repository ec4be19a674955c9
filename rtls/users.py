"""Console users, roles, scopes and the permission policy (issue 5; docs/users.md). Pure.

A :class:`User` has one :class:`Role` and a set of scopes: ``"*"`` (the whole site) or ward ids,
the ids of the site's ``secure_perimeter`` zones (``L1-WARD``). :data:`POLICY` is the command
table of docs/console-api.md as data; :func:`refusal` says whether a user may run a command on
an object of a ward (None: allowed; else the reason to show), :func:`sees` whether an object of
a ward is in the user's view. Storage and password hashing are in rtls/service/accounts.py.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from rtls.errors import RtlsError

if TYPE_CHECKING:
    from rtls.site import Site

ALL_SITE = "*"  # the scope of the whole site
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
WARD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # longer ones are refused before hashing (no megabyte hashing on login)
MAX_DISPLAY = 80


class UserError(RtlsError):
    """A user record or a password is invalid, or the user does not exist / already exists."""


class AuthError(RtlsError):
    """Authentication failed: wrong credentials, or a session expired or unknown."""


class Role(StrEnum):
    NURSE = "nurse"
    SECURITY = "security"
    TECHNICIAN = "technician"
    ADMIN = "admin"


class Reach(StrEnum):
    """How far a role's permission goes: any object, or technical alarms only."""

    ANY = "any"
    TECHNICAL = "technical"  # only on technical alarms (gateway silent, low battery, ...)


_N, _S, _T, _A = Role.NURSE, Role.SECURITY, Role.TECHNICIAN, Role.ADMIN
_ANY, _TECH = Reach.ANY, Reach.TECHNICAL


def _grant(*roles: Role, tech: Iterable[Role] = ()) -> Mapping[Role, Reach]:
    return MappingProxyType({**{r: _ANY for r in roles}, **{r: _TECH for r in tech}})


# docs/console-api.md, "Commands" and "Other requests"; plus the technical view.
POLICY: Mapping[str, Mapping[Role, Reach]] = MappingProxyType({
    "acknowledge": _grant(_N, _S, _A, tech=[_T]),
    "resolve": _grant(_N, _S, _A, tech=[_T]),
    "shelve": _grant(tech=[_T, _A]),  # low-priority technical only (the book checks priority)
    "admit": _grant(_N, _A),
    "pair": _grant(_N, _A),
    "unpair": _grant(_N, _A),
    "sign_out": _grant(_N, _A),
    "return": _grant(_N, _A),
    "discharge": _grant(_N, _A),
    "code_pink": _grant(_N, _S, _A),
    "end_code_pink": _grant(_S, _A),
    "check_in": _grant(_S, _A),
    "end_duty": _grant(_S, _A),
    "clear_fire": _grant(_S, _T, _A),
    "audit": _grant(_N, _S, _A),
    "users": _grant(_A),
    "user_add": _grant(_A),
    "user_disable": _grant(_A),
    "technical": _grant(_T, _A),  # the technician view / `technical` messages
})  # fmt: skip


def permissions(role: Role) -> frozenset[str]:
    """Every command and view ``role`` may use (some only on technical alarms: see POLICY)."""
    return frozenset(cmd for cmd, grants in POLICY.items() if role in grants)


def parse_role(text: str | Role) -> Role:
    """``text`` as a Role; UserError naming the valid roles."""
    try:
        return Role(text)
    except ValueError:
        raise UserError(
            f"unknown role {text!r}: one of {', '.join(r.value for r in Role)}"
        ) from None


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError(
            f"invalid user name {name!r}: 2 to 32 characters, lower-case letters, digits, "
            "'.', '_' or '-', starting with a letter"
        )
    return name


def check_scopes(scopes: Iterable[str], wards: Collection[str] | None = None) -> frozenset[str]:
    """The scopes as a frozenset; UserError if empty, malformed, ``*`` mixed with wards, or (when
    ``wards``, the site's ward ids, is given) naming an unknown ward."""
    if isinstance(scopes, str):
        scopes = [scopes]
    out = frozenset(scopes)
    if not out:
        raise UserError("a user needs at least one scope: a ward id or '*' for the whole site")
    for s in sorted(out):
        if not isinstance(s, str) or (s != ALL_SITE and not WARD_RE.match(s)):
            raise UserError(f"invalid scope {s!r}: a ward id or '*' for the whole site")
    if ALL_SITE in out and len(out) > 1:
        raise UserError("scope '*' (the whole site) cannot be combined with wards")
    if wards is not None:
        unknown = sorted(out - set(wards) - {ALL_SITE})
        if unknown:
            known = ", ".join(sorted(wards)) or "none: the site has no secure_perimeter zone"
            raise UserError(f"unknown ward {', '.join(unknown)}: the site's wards are {known} "
                            "(or '*' for the whole site)")  # fmt: skip
    return out


def check_password(password: object) -> str:
    """UserError unless ``password`` has MIN_PASSWORD to MAX_PASSWORD characters, not all blank."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UserError(f"password too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"password too long: at most {MAX_PASSWORD} characters")
    if not password.strip():
        raise UserError("password must not be only blanks")
    return password


def ward_ids(site: Site) -> tuple[str, ...]:
    """The site's wards: the ids of its ``secure_perimeter`` zones, in file order."""
    return tuple(z.id for z in site.zones if z.kind.value == "secure_perimeter")


@dataclass(frozen=True)
class User:
    """A console user. Built with validation (UserError): ``role`` may be given as text, ``scopes``
    as any iterable of ward ids or ``{"*"}``; an empty ``display`` becomes the name."""

    name: str
    role: Role
    scopes: frozenset[str]
    display: str = ""
    disabled: bool = False

    def __post_init__(self) -> None:
        check_name(self.name)
        object.__setattr__(self, "role", parse_role(self.role))
        object.__setattr__(self, "scopes", check_scopes(self.scopes))
        text = "".join(c if c.isprintable() else " " for c in str(self.display))
        display = " ".join(text.split())  # no control characters, no runs of blanks
        if len(display) > MAX_DISPLAY:
            raise UserError(f"display name too long: at most {MAX_DISPLAY} characters")
        object.__setattr__(self, "display", display or self.name)
        object.__setattr__(self, "disabled", bool(self.disabled))

    @property
    def site_wide(self) -> bool:
        return ALL_SITE in self.scopes

    @property
    def permissions(self) -> frozenset[str]:
        return permissions(self.role)

    def as_dict(self) -> dict[str, Any]:
        """The user as the console shows it (docs/console-api.md): never any secret."""
        return {"name": self.name, "display": self.display, "role": self.role.value,
                "scopes": sorted(self.scopes), "permissions": sorted(self.permissions),
                "disabled": self.disabled}  # fmt: skip


def sees(user: User, ward: str | None) -> bool:
    """Whether an object of ``ward`` (None: site-wide) is in the user's view. A disabled user
    sees nothing."""
    if user.disabled:
        return False
    return ward is None or user.site_wide or ward in user.scopes


def refusal(
    user: User, command: str, *, technical: bool = False, ward: str | None = None
) -> str | None:
    """None when ``user`` may run ``command``, else the reason to show (and audit).

    ``technical``: the command is on a technical alarm (technicians may acknowledge and resolve
    only those; only those can be shelved). ``ward``: the ward of the object acted on; None for
    a site-wide object, allowed for any scope."""
    grants = POLICY.get(command)
    if grants is None:
        return f"not allowed: unknown command {command!r}"
    if user.disabled:
        return f"not allowed: {user.name}'s account is disabled"
    reach = grants.get(user.role)
    if reach is None:
        return f"not allowed: {user.role.value} may not {command}"
    if reach is Reach.TECHNICAL and not technical:
        return f"not allowed: {user.role.value} may {command} technical alarms only"
    if not sees(user, ward):
        return f"not allowed: {user.name}'s scope does not include {ward}"
    return None
