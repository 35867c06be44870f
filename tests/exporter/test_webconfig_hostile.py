"""Hostile web configs: one located line and a quick refusal, never a traceback or a hang.

``tests/fixtures/fuzz/webconfig`` holds a minimal config for every kind of
fault ``benchmarks/fuzz_inputs.py`` found in :func:`load_web_config`: YAML
values PyYAML cannot build (a number past Python's 4,300-digit ``int()``
limit, a date that does not exist), nesting deeper than the recursion
limit, values of the wrong kind where a name is expected (unhashable: a
TypeError), bcrypt hashes bcrypt refuses (a ValueError at the first request,
or when the dummy hash is made), and a billion-laughs alias bomb as a header
value (``str()`` of 9**9 items: start-up never finished).
"""

from __future__ import annotations

import time
from pathlib import Path

import bcrypt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcplens.errors import InputError
from tcplens.exporter import BasicAuth, load_web_config

CORPUS = sorted((Path(__file__).parents[1] / "fixtures" / "fuzz" / "webconfig").glob("*.yml"))
HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
#: nine levels of nine aliases in one flow sequence
BOMB = (
    "[&a [x, x, x, x, x, x, x, x, x]"
    + "".join(
        f", &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "]"
)


def refused(tmp_path: Path, text: str) -> InputError:
    path = tmp_path / "web.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_web_config(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message and len(message) <= 400
    return caught.value


def test_the_corpus_holds_every_kind_of_finding() -> None:
    assert len(CORPUS) >= 9


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_every_fuzz_finding_is_refused_in_one_line_and_quickly(path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(InputError) as caught:
        load_web_config(path)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message and len(message) <= 400


def test_a_number_past_the_int_limit_is_a_yaml_error_on_its_line(tmp_path: Path) -> None:
    exc = refused(tmp_path, f"tls_server_config:\n  cert_file: c\n  key_file: {'1' * 4301}\n")
    assert exc.line == 3 and "cannot read this value" in exc.reason


def test_a_date_that_does_not_exist_is_a_yaml_error_on_its_line(tmp_path: Path) -> None:
    exc = refused(tmp_path, "basic_auth_users:\n  alice: 2001-13-45\n")
    assert exc.line == 2 and "month must be in 1..12" in exc.reason


def test_nesting_past_the_recursion_limit_is_refused(tmp_path: Path) -> None:
    exc = refused(tmp_path, "http_server_config:\n  headers: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in exc.reason


@pytest.mark.parametrize("key", ["client_auth_type", "min_version", "max_version"])
@pytest.mark.parametrize(
    "value", ["[a, b]", "{a: 1}", "'" + "x" * 5000 + "'", BOMB], ids=["list", "map", "long", "bomb"]
)
def test_a_name_of_the_wrong_kind_is_refused_quoted_short(
    tmp_path: Path, key: str, value: str
) -> None:
    started = time.monotonic()
    exc = refused(
        tmp_path, f"tls_server_config:\n  cert_file: c\n  key_file: k\n  {key}: {value}\n"
    )
    assert exc.reason.startswith(key) and "is not one of" in exc.reason
    assert time.monotonic() - started < 5  # repr() of the bomb, quoted, never finished


@pytest.mark.parametrize(
    "hashed", ["$2y$", "$2b$99$" + HASH[7:], "$2b$03$" + HASH[7:], HASH[:-1], HASH[:-1] + "!"]
)
def test_a_hash_bcrypt_refuses_is_refused_at_loading(tmp_path: Path, hashed: str) -> None:
    # these loaded, then BasicAuth raised ValueError making its dummy hash (cost 99) or
    # every check failed with "Invalid salt": now the config names the user
    exc = refused(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n")
    assert "'alice' needs a bcrypt hash" in exc.reason


def test_every_hash_that_loads_is_one_basic_auth_can_check(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        f"basic_auth_users:\n  alice: {HASH}\n  bob: '{HASH.replace('$2b$', '$2y$')}'\n"
    )
    auth = BasicAuth(load_web_config(path).basic_auth_users)
    assert auth.check("Basic YWxpY2U6cHc=")  # alice:pw
    assert not auth.check("Basic Ym9iOm5v")  # bob:no


def test_an_alias_bomb_as_a_header_value_is_refused_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    exc = refused(tmp_path, f"http_server_config:\n  headers:\n    X-Bomb: {BOMB}\n")
    assert time.monotonic() - started < 5
    assert "'X-Bomb' must have a text value" in exc.reason


def test_scalar_header_values_still_load(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("http_server_config:\n  headers:\n    X-A: text\n    X-B: 1\n    X-C: true\n")
    assert load_web_config(path).headers == {"X-A": "text", "X-B": "1", "X-C": "True"}


VALUES = st.one_of(
    st.sampled_from(["[]", "{}", "~", "1" * 4301, "2001-02-30", "!!binary aGk=", "*x", BOMB]),
    st.text(max_size=30),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(
        ["cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version"]
    ),
    value=VALUES,
    user=VALUES,
    header=VALUES,
)
def test_any_value_anywhere_loads_or_is_one_located_line(
    tmp_path_factory: pytest.TempPathFactory, key: str, value: str, user: str, header: str
) -> None:
    path = tmp_path_factory.mktemp("web") / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: c\n  key_file: k\n  {key}: {value}\n"
        f"basic_auth_users:\n  u: {user}\nhttp_server_config:\n  headers:\n    X: {header}\n",
        encoding="utf-8",
        errors="surrogatepass",
    )
    try:
        web = load_web_config(path)
    except InputError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        assert len(str(exc)) <= 400
        return
    for hashed in web.basic_auth_users.values():
        if hashed[4:6] == b"04":  # cheap enough to check here: bcrypt takes it
            bcrypt.checkpw(b"x", hashed)
