"""The metrics endpoint's web config: Prometheus exporter-toolkit YAML, TLS context.

Why the toolkit's format rather than flags of our own: one file then serves
node_exporter and tcplens alike, and operators already know its keys.
"""

from __future__ import annotations

import os
import re
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any, Final

from tcplens.errors import InputError

__all__ = ["WebConfig", "load_web_config"]

# The web-config file follows the Prometheus exporter-toolkit conventions
# (https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md) so the
# same file works for node_exporter and tcplens.  The subset supported is documented in
# docs/exporter.md; any other key is an error rather than silently ignored, as in the toolkit.

_TLS_KEYS: Final = frozenset(
    {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}
)
_TLS_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH: Final = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


@dataclass(frozen=True, slots=True)
class WebConfig:
    """TLS and basic-auth settings of the metrics endpoint (exporter-toolkit names)."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None
    #: user -> bcrypt hash
    basic_auth_users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext:
        """The server context; loading it here surfaces bad cert/key files at start-up."""
        assert self.cert_file is not None and self.key_file is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            ctx.maximum_version = _TLS_VERSIONS[self.max_version]
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"cannot load certificate/key: {exc}", path=self.cert_file) from None
        ctx.verify_mode = _CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise InputError(
                    f"cannot load client CA: {exc}", path=self.client_ca_file
                ) from None
        return ctx


#: a bcrypt hash as bcrypt itself accepts it: variant, cost 4..31, 22 + 31 characters of
#: salt and hash; checked on loading, so a damaged one is a located error at start-up rather
#: than a ValueError when building the dummy hash or at the first request
_BCRYPT_HASH: Final = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def _shown(value: Any) -> str:
    """A value quoted in an error, cut so the error stays one readable line.

    A list or mapping is named, not shown: its ``repr`` can be a billion laughs
    (YAML aliases nine deep are 9**9 items) that never finishes.
    """
    if isinstance(value, list | dict | set):
        return f"(a {'mapping' if isinstance(value, dict) else 'list'})"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _web_config_loader() -> type[Any]:
    """``yaml.SafeLoader`` that reports a value it cannot build as a located YAML error.

    PyYAML lets the ``ValueError`` of a number past Python's 4,300-digit
    ``int()`` limit or a date that does not exist (``2001-13-45``) escape
    unlocated; here it becomes a ``ConstructorError`` marking the value.
    A hexadecimal, octal or binary number escapes that limit (``int(s, 16)``
    has none) and failed later, unlocated, when ``str()`` wrote it into an
    error or a header; it is refused here the same way.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except (ValueError, OverflowError) as exc:
                reason = str(exc).split(":")[0][:80]
                raise yaml.constructor.ConstructorError(
                    None, None, f"cannot read this value ({reason})", node.start_mark
                ) from None

        def construct_yaml_int(self, node: Any) -> int:
            value: int = super().construct_yaml_int(node)
            # under 8**limit, so under 10**limit: str() writes it (no web config
            # number comes near; bit_length is cheap where 10**4300 is not free)
            limit = sys.get_int_max_str_digits()
            if limit and value.bit_length() > 3 * limit:
                raise ValueError("a number too long to write in decimal")
            return value

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    return Loader


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read an exporter-toolkit web-config YAML file; relative paths are relative to it."""
    import yaml

    where = str(path)
    try:
        with open(path, "rb") as handle:
            # decoded whole, so a decode error's offset is the file's byte offset
            loader = _web_config_loader()(handle.read().decode("utf-8"))
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
    except OSError as exc:
        raise InputError(f"cannot read web config: {exc.strerror}", path=where) from None
    except UnicodeDecodeError as exc:
        raise InputError("not UTF-8 text", path=where, offset=exc.start) from None
    except RecursionError:
        raise InputError("not valid YAML: nested too deeply", path=where) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InputError(f"not valid YAML: {problem}", path=where, line=line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top level", path=where)
    unknown = set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        keys = "key" if len(unknown) == 1 else "keys"
        raise InputError(f"unsupported {keys}: {', '.join(sorted(map(str, unknown)))}", path=where)
    base = os.path.dirname(os.path.abspath(where))

    def resolve(value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise InputError(f"{key} must be a file name", path=where)
        return value if os.path.isabs(value) else os.path.join(base, value)

    tls = data.get("tls_server_config") or {}
    if not isinstance(tls, dict):
        raise InputError("tls_server_config must be a mapping", path=where)
    unknown = set(tls) - _TLS_KEYS
    if unknown:
        raise InputError(
            f"unsupported tls_server_config {'key' if len(unknown) == 1 else 'keys'}: "
            f"{', '.join(sorted(map(str, unknown)))}",
            path=where,
        )
    kwargs: dict[str, Any] = {}
    if tls:
        if "cert_file" not in tls or "key_file" not in tls:
            raise InputError("tls_server_config needs both cert_file and key_file", path=where)
        kwargs["cert_file"] = resolve(tls["cert_file"], "cert_file")
        kwargs["key_file"] = resolve(tls["key_file"], "key_file")
        if "client_ca_file" in tls:
            kwargs["client_ca_file"] = resolve(tls["client_ca_file"], "client_ca_file")
        auth = tls.get("client_auth_type", "NoClientCert")
        if not isinstance(auth, str) or auth not in _CLIENT_AUTH:
            raise InputError(
                f"client_auth_type {_shown(auth)} is not one of {', '.join(_CLIENT_AUTH)}",
                path=where,
            )
        if auth != "NoClientCert" and "client_ca_file" not in tls:
            raise InputError(f"client_auth_type {auth} needs client_ca_file", path=where)
        kwargs["client_auth_type"] = auth
        for key in ("min_version", "max_version"):
            if key in tls:
                if not isinstance(tls[key], str) or tls[key] not in _TLS_VERSIONS:
                    raise InputError(
                        f"{key} {_shown(tls[key])} is not one of {', '.join(_TLS_VERSIONS)}",
                        path=where,
                    )
                kwargs[key] = tls[key]
    users = data.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise InputError("basic_auth_users must map user names to bcrypt hashes", path=where)
    hashes: dict[str, bytes] = {}
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not _BCRYPT_HASH.fullmatch(hashed):
            raise InputError(
                f"basic_auth_users: {_shown(user)} needs a bcrypt hash "
                "($2a$, $2b$ or $2y$, a cost from 04 to 31, 53 characters of salt and hash)",
                path=where,
            )
        hashes[str(user)] = hashed.encode()
    http = data.get("http_server_config") or {}
    if not isinstance(http, dict) or set(http) - {"headers", "http2"}:
        raise InputError("http_server_config supports only headers (and http2)", path=where)
    headers = http.get("headers") or {}
    if not isinstance(headers, dict):
        raise InputError("http_server_config.headers must be a mapping", path=where)
    for name, value in headers.items():
        # a header is one line of text; str() of a nested value could also be a
        # billion laughs (aliases nine deep: 9**9 items) that never finishes
        if not isinstance(value, str | int | float | bool):
            raise InputError(
                f"http_server_config.headers: {_shown(name)} must have a text value", path=where
            )
    return WebConfig(
        basic_auth_users=hashes, headers={str(k): str(v) for k, v in headers.items()}, **kwargs
    )
