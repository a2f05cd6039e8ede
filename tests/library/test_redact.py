"""What a stored command line hides: every secret-bearing argument of the documented list, and no
argument that carries none (a port, find's -print, a password *file*)."""

from __future__ import annotations

import shlex

import pytest
from mutexctl.redact import mask_command

MASKED = [
    (["mysql", "-pHunter2x", "-u", "root"], "mysql -p*** -u root"),
    (["sh", "-c", "mysqldump -pHunter2x db > out"], "sh -c 'mysqldump -p*** db > out'"),
    (["app", "--password=Hunter2x"], "app --password=***"),
    (["app", "--password", "Hunter2x", "--verbose"], "app --password *** --verbose"),
    (["app", "--db-password", "it's Hunter2x"], "app --db-password ***"),
    (["app", "--client-secret", "Hunter2x"], "app --client-secret ***"),
    (["app", "--api-key=Hunter2x"], "app --api-key=***"),
    (["app", "--auth-token", "Hunter2x"], "app --auth-token ***"),
    (["env", "PGPASSWORD=Hunter2x", "psql"], "env PGPASSWORD=*** psql"),
    (["app", "token=Hunter2x"], "app token=***"),
    (["curl", "https://h/x?access_token=Hunter2x&page=2"], "curl 'https://h/x?access_token=***&page=2'"),
    (["curl", "-H", "Authorization: Bearer Hunter2x", "https://h"], "curl -H 'Authorization: Bearer ***' https://h"),
    (["curl", "-H", "authorization: Basic Hunter2x"], "curl -H 'authorization: Basic ***'"),
    (["curl", "-H", "X-Api-Key: Hunter2x"], "curl -H 'X-Api-Key: ***'"),
    (["curl", "-H", "Cookie: session=Hunter2x"], "curl -H 'Cookie: ***'"),
    (["mongosh", "mongodb://admin:Hunter2x@db/x"], "mongosh mongodb://***@db/x"),
]
KEPT = [
    ["find", ".", "-name", "x", "-print"],
    ["ssh", "-p", "2222", "host"],
    ["docker", "run", "-p8080:80", "img"],
    ["app", "--password-file", "/etc/app/pw"],
    ["app", "--password-stdin"],
    ["app", "--password"],  # (no value given: it prompts)
    ["app", "--secret", "--other"],  # an option after it is no value
    ["git", "push", "--force", "origin", "main"],
    ["mail", "ops@example.com"],
]


@pytest.mark.parametrize(("argv", "stored"), MASKED, ids=lambda v: v if isinstance(v, str) else None)
def test_secret_bearing_arguments_are_masked(argv: list[str], stored: str) -> None:
    text = mask_command(shlex.join(argv))
    assert "Hunter2x" not in text
    assert text == stored


@pytest.mark.parametrize("argv", KEPT, ids=shlex.join)
def test_arguments_without_a_secret_are_kept(argv: list[str]) -> None:
    assert mask_command(shlex.join(argv)) == shlex.join(argv)


def test_masking_is_linear_in_the_text() -> None:
    import time

    text = shlex.join(["app", *["--password=x'"] * 20_000, "a" * 100_000])
    started = time.process_time()
    assert "x'" not in mask_command(text).replace("'\"'\"'", "")
    assert time.process_time() - started < 10  # quadratic would be minutes
