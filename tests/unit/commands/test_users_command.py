"""``mtctl users`` and ``mtctl migrate``: bad arguments and unusable databases are one line
and exit code 2."""

from __future__ import annotations

import os

import pytest

from control_plane.cli import main


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("MTB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MTB_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def mtctl(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_negative_rate_limit_and_zero_ttl_are_usage_errors(env, capsys):
    code, _, err = mtctl(capsys, "users", "create", "--email", "a@b.c",
                         "--rate-limit-per-minute", "-5")  # fmt: skip
    assert code == 2 and "--rate-limit-per-minute: must be >= 0" in err
    code, _, err = mtctl(capsys, "users", "token", "--email", "a@b.c", "--ttl", "0")
    assert code == 2 and "--ttl: must be >= 1" in err


def test_token_ttl_is_used_as_given(env, capsys):
    import jwt

    assert mtctl(capsys, "users", "create", "--email", "a@b.c")[0] == 0
    code, out, err = mtctl(capsys, "users", "token", "--email", "a@b.c", "--ttl", "7")
    assert code == 0, err
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 7


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("bogus://x", "MTB_DATABASE_URL: Can't load plugin"),
        ("notaurl", "MTB_DATABASE_URL: Could not parse"),
        ("sqlite:///{tmp}/notdb.sqlite", "database error: file is not a database"),
        ("sqlite:///{tmp}/afile/x.db", "database error: cannot create"),
    ],
)
@pytest.mark.parametrize("argv", [["users", "list"], ["users", "create", "--email", "x@y.z"],
                                  ["migrate"]])  # fmt: skip
def test_unusable_database_is_one_line(env, capsys, monkeypatch, url, message, argv):
    (env / "notdb.sqlite").write_text("this is not a database\n" * 100)
    (env / "afile").write_text("x")
    monkeypatch.setenv("MTB_DATABASE_URL", url.format(tmp=env))
    code, out, err = mtctl(capsys, *argv)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and not out


def test_unknown_revision(env, capsys, monkeypatch):
    monkeypatch.setenv("MTB_DATABASE_URL", f"sqlite:///{env / 'm.db'}")
    code, _, err = mtctl(capsys, "migrate", "--revision", "bogus")
    assert code == 2 and "Can't locate revision identified by 'bogus'" in err
