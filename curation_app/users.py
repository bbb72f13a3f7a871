"""Annotator accounts: a text file of salted scrypt hashes, one user per line.

    alice:scrypt:17:8:1:<salt, base64>:<hash, base64>

scrypt with N = 2^17, r = 8, p = 1 is the OWASP Password Storage Cheat Sheet's minimum for scrypt;
the parameters are stored on each line, so old lines keep verifying if the default changes. The
file holds no password, but it is still written with mode 0600 (temp file + rename, so a crash
never leaves half a file). The server re-reads it when it changes: `users add` works while the
app runs.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import logging
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from pair_manifest.atomic import write_atomically
from pair_manifest.errors import UserError

SCRYPT_LOG2_N = 17  # OWASP: N=2^17, r=8, p=1 (128 MiB and about half a second of one core per check)
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_PASSWORD_LENGTH = 8
MAX_SCRYPT_BYTES = 1 << 30  # a line asking scrypt for more memory than this is refused when read
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

log = logging.getLogger("curation_app")


@dataclass(frozen=True)
class Account:
    name: str
    log2_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def line(self) -> str:
        return ":".join([self.name, "scrypt", str(self.log2_n), str(self.r), str(self.p),
                         base64.b64encode(self.salt).decode(), base64.b64encode(self.digest).decode()])


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                          maxmem=2 * 128 * n * r * p + (1 << 20), dklen=HASH_BYTES)


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise UserError(f"user name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    return name


def make_account(name: str, password: str, *, log2_n: int = SCRYPT_LOG2_N) -> Account:
    check_name(name)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password for {name}: at least {MIN_PASSWORD_LENGTH} characters")
    salt = os.urandom(SALT_BYTES)
    return Account(name, log2_n, SCRYPT_R, SCRYPT_P, salt, _scrypt(password, salt, log2_n, SCRYPT_R, SCRYPT_P))


def read_accounts(path: str | Path) -> dict[str, Account]:
    """Parse the users file; a malformed line is an error naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: users file not found (create it with `semantic-pairs users add --users {path} NAME`)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the users file ({error})") from None
    accounts: dict[str, Account] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(":")
        try:
            if len(parts) != 7 or parts[1] != "scrypt":
                raise ValueError("expected name:scrypt:log2_n:r:p:salt:hash")
            name = check_name(parts[0])
            account = Account(name, int(parts[2]), int(parts[3]), int(parts[4]),
                              base64.b64decode(parts[5], validate=True), base64.b64decode(parts[6], validate=True))
            if not (10 <= account.log2_n <= 20 and 1 <= account.r <= 32 and 1 <= account.p <= 16) \
                    or 128 * account.r * account.p << account.log2_n > MAX_SCRYPT_BYTES:
                raise ValueError(f"scrypt parameters out of range (2^{account.log2_n}, r={account.r}, p={account.p})")
            if len(account.salt) < 8 or len(account.digest) != HASH_BYTES:
                raise ValueError("salt or hash of the wrong length")
        except (ValueError, UserError) as error:
            raise UserError(f"{path} line {number}: malformed user entry ({error})") from None
        if name in accounts:
            raise UserError(f"{path} line {number}: user {name} is listed twice")
        accounts[name] = account
    return accounts


def add_user(path: str | Path, name: str, password: str, *, log2_n: int = SCRYPT_LOG2_N) -> str:
    """Add or replace one user; returns 'added' or 'updated'."""
    path = Path(path)
    accounts = read_accounts(path) if path.exists() else {}
    outcome = "updated" if name in accounts else "added"
    accounts[name] = make_account(name, password, log2_n=log2_n)
    text = "".join(a.line() + "\n" for a in accounts.values())
    write_atomically(path, lambda handle: handle.write(text.encode("utf-8")), mode=0o600)
    return outcome


def exposure_warning(path: str | Path) -> str | None:
    """A warning when others than the owner may read or write the users file: the hashes are
    salted and slow, but a copy can be attacked offline, and a writable file can be given a new
    account. None when the mode is 0600 (what `users add` writes) or stricter."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (f"{path} is readable or writable by other users (mode {mode:04o}): anyone on this machine can copy "
            f"its password hashes; run `chmod 600 {path}`")


class UserBook:
    """The server's view of the users file, re-read whenever the file changes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._accounts: dict[str, Account] = {}
        self._dummy = make_account("nobody", os.urandom(12).hex())
        self.reload()
        if not self._accounts:
            raise UserError(f"{self.path}: no users in this file (add one with `semantic-pairs users add`)")

    def reload(self) -> None:
        with self._lock:
            status = self.path.stat() if self.path.exists() else None
            stamp = (status.st_mtime_ns, status.st_size, status.st_ino) if status else None
            if stamp is None or stamp != self._stamp:  # a missing file is an error, not "no users"
                self._accounts = read_accounts(self.path)
                self._stamp = stamp
                warning = exposure_warning(self.path)
                if warning:
                    log.warning("%s", warning)

    def names(self) -> list[str]:
        self.reload()
        return sorted(self._accounts)

    def verify(self, name: str, password: str) -> bool:
        """Constant work whether or not the user exists (no user-name probing by timing)."""
        try:
            self.reload()
        except UserError:
            return False
        account = self._accounts.get(name)
        reference = account or self._dummy
        digest = _scrypt(password, reference.salt, reference.log2_n, reference.r, reference.p)
        return account is not None and hmac.compare_digest(digest, reference.digest)
