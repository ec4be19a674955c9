"""Users, roles, scopes and the permission policy (rtls/users.py): pure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rtls.site import load_site
from rtls.users import (
    MIN_PASSWORD,
    POLICY,
    Reach,
    Role,
    User,
    UserError,
    check_password,
    check_scopes,
    permissions,
    refusal,
    sees,
    ward_ids,
)

ROOT = Path(__file__).resolve().parents[2]

anna = User("nurse.anna", Role.NURSE, frozenset({"L1-WARD"}), "Anna Martin")
sam = User("security.sam", Role.SECURITY, frozenset({"*"}), "Sam")
tom = User("tech.tom", Role.TECHNICIAN, frozenset({"*"}), "Tom")
ada = User("admin.ada", Role.ADMIN, frozenset({"*"}), "Ada")


def test_roles_are_the_four_of_the_contract() -> None:
    assert [r.value for r in Role] == ["nurse", "security", "technician", "admin"]


def test_nurse_may_not_end_code_pink_and_the_reason_says_so() -> None:
    assert refusal(anna, "end_code_pink") == "not allowed: nurse may not end_code_pink"
    assert refusal(sam, "end_code_pink") is None
    assert refusal(anna, "code_pink") is None


def test_ward_work_is_for_nurses_and_admins() -> None:
    for cmd in ("admit", "pair", "unpair", "sign_out", "return", "discharge"):
        assert refusal(anna, cmd, ward="L1-WARD") is None
        assert refusal(ada, cmd, ward="L1-WARD") is None
        assert refusal(sam, cmd, ward="L1-WARD") == f"not allowed: security may not {cmd}"
        assert refusal(tom, cmd, ward="L1-WARD") == f"not allowed: technician may not {cmd}"


def test_technician_acknowledges_and_resolves_technical_alarms_only() -> None:
    for cmd in ("acknowledge", "resolve"):
        assert refusal(tom, cmd, technical=True) is None
        assert refusal(tom, cmd) == f"not allowed: technician may {cmd} technical alarms only"
        assert refusal(anna, cmd, ward="L1-WARD") is None
        assert refusal(anna, cmd, technical=True) is None


def test_only_technical_alarms_are_shelved_and_only_by_technicians_and_admins() -> None:
    assert refusal(tom, "shelve", technical=True) is None
    assert refusal(ada, "shelve", technical=True) is None
    assert refusal(ada, "shelve") == "not allowed: admin may shelve technical alarms only"
    assert refusal(anna, "shelve", technical=True) == "not allowed: nurse may not shelve"


def test_admin_operations_and_views() -> None:
    for op in ("users", "user_add", "user_disable"):
        assert refusal(ada, op) is None
        for u in (anna, sam, tom):
            assert refusal(u, op) == f"not allowed: {u.role.value} may not {op}"
    assert refusal(anna, "audit") is None
    assert refusal(tom, "audit") == "not allowed: technician may not audit"
    assert refusal(tom, "technical") is None
    assert refusal(anna, "technical") is not None
    assert refusal(tom, "clear_fire") is None


def test_scope_limits_a_nurse_to_her_ward() -> None:
    assert refusal(anna, "acknowledge", ward="L2-WARD") == (
        "not allowed: nurse.anna's scope does not include L2-WARD"
    )
    assert refusal(anna, "acknowledge", ward=None) is None  # site-wide object
    assert refusal(sam, "acknowledge", ward="L2-WARD") is None  # "*"
    # the role is checked first: the reason names what the user could fix least
    assert refusal(anna, "end_code_pink", ward="L2-WARD") == (
        "not allowed: nurse may not end_code_pink"
    )
    assert sees(anna, "L1-WARD")
    assert sees(anna, None)
    assert not sees(anna, "L2-WARD")
    assert sees(sam, "L2-WARD")


def test_disabled_user_may_do_nothing_and_sees_nothing() -> None:
    off = User("nurse.anna", Role.NURSE, frozenset({"L1-WARD"}), disabled=True)
    assert refusal(off, "acknowledge", ward="L1-WARD") == (
        "not allowed: nurse.anna's account is disabled"
    )
    assert not sees(off, None)


def test_unknown_command_is_refused() -> None:
    assert refusal(ada, "format_disk") == "not allowed: unknown command 'format_disk'"


def test_permissions_per_role() -> None:
    assert permissions(Role.NURSE) == frozenset({
        "acknowledge", "resolve", "admit", "pair", "unpair", "sign_out", "return", "discharge",
        "code_pink", "audit"})  # fmt: skip
    assert permissions(Role.SECURITY) == frozenset({
        "acknowledge", "resolve", "code_pink", "end_code_pink", "check_in", "end_duty",
        "clear_fire", "audit"})  # fmt: skip
    assert permissions(Role.TECHNICIAN) == frozenset({
        "acknowledge", "resolve", "shelve", "clear_fire", "technical"})  # fmt: skip
    assert permissions(Role.ADMIN) == frozenset(POLICY)


def _doc_table() -> dict[str, dict[Role, Reach]]:
    """The command table of docs/console-api.md, read as data."""
    text = (ROOT / "docs" / "console-api.md").read_text(encoding="utf-8")
    section = text.split("### Commands", 1)[1].split("\n\n")[2]
    table: dict[str, dict[Role, Reach]] = {}
    for line in section.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        commands = re.findall(r"`(\w+)`", cells[0])
        roles = cells[2]
        if roles.startswith("as "):
            grants = dict(table[roles.split()[1]])
        else:
            main, _, extra = roles.partition(";")
            reach = Reach.TECHNICAL if "technical alarms only" in main else Reach.ANY
            names = re.sub(r"\(.*?\)", "", main)
            grants = {Role(n.strip()): reach for n in names.split(",")}
            if extra:
                who, _, what = extra.partition(":")
                assert "technical alarms" in what
                grants[Role(who.strip())] = Reach.TECHNICAL
        for c in commands:
            table[c] = grants
    return table


def test_policy_matches_the_documented_command_table() -> None:
    table = _doc_table()
    assert len(table) == 14
    for cmd, grants in table.items():
        assert dict(POLICY[cmd]) == grants, cmd


@pytest.mark.parametrize("name", ["anna", "nurse.anna", "a1", "tech_tom-2", "x" * 32])
def test_valid_names(name: str) -> None:
    assert User(name, Role.NURSE, frozenset({"*"})).name == name


@pytest.mark.parametrize("name", ["", "a", "Anna", "1anna", "anna martin", "x" * 33, "é", "a/b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(UserError, match="invalid user name"):
        User(name, Role.NURSE, frozenset({"*"}))


def test_role_from_text_and_invalid_role() -> None:
    assert User("anna", "nurse", frozenset({"*"})).role is Role.NURSE  # type: ignore[arg-type]
    with pytest.raises(UserError, match="unknown role 'doctor': one of nurse, security"):
        User("anna", "doctor", frozenset({"*"}))  # type: ignore[arg-type]


def test_scopes_validation() -> None:
    with pytest.raises(UserError, match="at least one scope"):
        User("anna", Role.NURSE, frozenset())
    with pytest.raises(UserError, match="cannot be combined"):
        User("anna", Role.NURSE, frozenset({"*", "L1-WARD"}))
    with pytest.raises(UserError, match="invalid scope"):
        User("anna", Role.NURSE, frozenset({"L1 WARD"}))
    with pytest.raises(UserError, match=r"unknown ward L9-WARD: the site's wards are L1-WARD, L2"):
        check_scopes(["L9-WARD"], ["L1-WARD", "L2-WARD"])
    assert check_scopes(["L1-WARD", "L1-WARD"], ["L1-WARD"]) == frozenset({"L1-WARD"})
    assert check_scopes(["*"], []) == frozenset({"*"})


def test_display_is_cleaned_and_defaults_to_the_name() -> None:
    assert User("anna", Role.NURSE, frozenset({"*"})).display == "anna"
    assert User("anna", Role.NURSE, frozenset({"*"}), " Anna\n\x1b  Martin ").display == (
        "Anna Martin"
    )
    with pytest.raises(UserError, match="display name too long"):
        User("anna", Role.NURSE, frozenset({"*"}), "x" * 81)


def test_as_dict_is_what_the_console_shows() -> None:
    u = User("nurse.bea", Role.NURSE, frozenset({"L2-WARD", "L1-WARD"}), "Bea")
    d = u.as_dict()
    assert d["name"] == "nurse.bea"
    assert d["role"] == "nurse"
    assert d["display"] == "Bea"
    assert d["scopes"] == ["L1-WARD", "L2-WARD"]
    assert d["permissions"] == sorted(permissions(Role.NURSE))
    assert d["disabled"] is False
    assert not {"password", "hash"} & set(d)


def test_password_policy() -> None:
    assert check_password("x" * MIN_PASSWORD) == "x" * MIN_PASSWORD
    with pytest.raises(UserError, match="at least 10 characters"):
        check_password("x" * (MIN_PASSWORD - 1))
    with pytest.raises(UserError, match="too long"):
        check_password("x" * 1025)
    with pytest.raises(UserError, match="blanks"):
        check_password(" " * 12)


def test_wards_of_the_example_site_are_its_secure_perimeters() -> None:
    assert ward_ids(load_site()) == ("L1-WARD", "L2-WARD")
