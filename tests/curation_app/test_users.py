"""Annotator accounts: salted scrypt hashes, `users add` reading the password from stdin, and a
users file that is changed while the server runs."""
from __future__ import annotations

import stat
import subprocess

import pytest

from pair_manifest.errors import UserError
from tests.curation_app.app_server import CLI

from curation_app.users import UserBook, add_user, read_accounts


def test_users_add_from_stdin_stores_a_salted_hash_only(tmp_path):
    users = tmp_path / "users"
    for name, password in (("alice", "correct horse"), ("bob", "correct horse")):
        result = subprocess.run([str(CLI), "users", "add", "--users", str(users), name], input=password + "\n",
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and result.stdout.strip() == f"added user {name} in {users}"
    text = users.read_text()
    assert "correct horse" not in text
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    accounts = read_accounts(users)
    assert accounts["alice"].log2_n == 17  # the OWASP scrypt minimum, N = 2^17
    assert accounts["alice"].salt != accounts["bob"].salt and accounts["alice"].digest != accounts["bob"].digest
    book = UserBook(users)
    assert book.verify("alice", "correct horse") and not book.verify("alice", "correct horse!")
    assert not book.verify("carol", "correct horse")


def test_users_add_refuses_bad_names_and_short_passwords(tmp_path):
    for argv, stdin, message in ((["bad name"], "long enough pw\n", "user name 'bad name'"),
                                 (["alice"], "short\n", "at least 8 characters")):
        result = subprocess.run([str(CLI), "users", "add", "--users", str(tmp_path / "users"), *argv], input=stdin,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "users").exists()


def test_a_changed_password_and_a_new_user_are_seen_by_a_running_server(tmp_path):
    users = tmp_path / "users"
    add_user(users, "alice", "first password", log2_n=12)
    book = UserBook(users)
    assert book.verify("alice", "first password")
    assert add_user(users, "alice", "second password", log2_n=12) == "updated"
    add_user(users, "dora", "dora's password", log2_n=12)
    assert not book.verify("alice", "first password") and book.verify("alice", "second password")
    assert book.verify("dora", "dora's password") and book.names() == ["alice", "dora"]


def test_a_malformed_users_file_names_the_line(tmp_path):
    users = tmp_path / "users"
    users.write_text("# annotators\nalice:scrypt:17:8:1:AAAA:BBBB\nbob:plain:secret\n")
    with pytest.raises(UserError, match=r"users line 2: malformed user entry"):
        read_accounts(users)
    with pytest.raises(UserError, match="users file not found"):
        UserBook(tmp_path / "missing")


def test_users_add_on_a_terminal_asks_twice_without_echo(tmp_path):
    import os
    import pty
    import select

    users = tmp_path / "users"
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI with the pseudo-terminal as its controlling terminal
        os.execv(str(CLI), [str(CLI), "users", "add", "--users", str(users), "erin"])
    seen = b""

    def read_until(token: bytes) -> None:
        nonlocal seen
        while token not in seen:
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready, f"no {token!r} from the terminal; got {seen!r}"
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                break
            seen += chunk

    read_until(b"password for erin: ")
    os.write(fd, b"typed on a tty\n")
    read_until(b"again: ")
    os.write(fd, b"typed on a tty\n")
    read_until(b"added user erin")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"typed on a tty" not in seen  # never echoed
    assert UserBook(users).verify("erin", "typed on a tty")


# -- generated bad users files ----------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

GOOD_LINE = "alice:scrypt:10:8:1:c2FsdHNhbHRzYWx0:" + "A" * 43 + "="
PIECES = st.sampled_from(["alice", "bob", "bad name", "", "é", "scrypt", "plain", "17", "10", "99", "-1", "0",
                          "99999999999999999999", "1e3", "c2FsdA==", "not base64!", "A" * 43 + "=", "#", " ", "\x00",
                          "\u2028"])


@st.composite
def users_files(draw) -> bytes:
    lines = draw(st.lists(st.one_of(
        st.just(GOOD_LINE),
        st.lists(PIECES, min_size=0, max_size=9).map(":".join),
        st.text(max_size=40),
    ), min_size=1, max_size=6))
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    return data + draw(st.sampled_from([b"", b"\n", b"\xff\xfe\n", b"\r\n"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=users_files())
def test_generated_users_files_are_refused_by_file_and_line_and_never_changed(tmp_path, content):
    path = tmp_path / "users.txt"
    path.write_bytes(content)
    try:
        accounts = read_accounts(path)
    except UserError as error:
        assert str(error).startswith(f"{path}")  # names the file (and the line, where one is at fault)
        with pytest.raises(UserError):
            add_user(path, "newcomer", "a long enough password", log2_n=10)  # refuses to rewrite a bad file
        assert path.read_bytes() == content
        return
    if accounts:  # a file that happens to be valid: the server can check a password against it
        book = UserBook(path)
        assert not book.verify(next(iter(accounts)), "surely not the password")
