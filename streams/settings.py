"""Where the broker is and what the topics are called: one typed record, every field from an env var.

Every setting of TRAIL is an environment variable; ``TRAIL_CONFIG=path.toml`` names a file of the same names
(``TRAIL_WINDOW = "1d"``, ``KAFKA_BOOTSTRAP_SERVERS = "broker:9092"``) that fills in what the environment does
not set: the environment always wins, so one file can hold a deployment's settings and a shell can override one.
"""

from __future__ import annotations

import functools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from trail.errors import ConfigError

T = TypeVar("T")

__all__ = ["KafkaSettings", "SettingReader", "TopicNames", "setting_reader"]


@functools.lru_cache(maxsize=8)
def _config_file(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"TRAIL_CONFIG={path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"TRAIL_CONFIG={path}: not valid TOML ({exc})") from None
    bad = [key for key, value in values.items() if isinstance(value, (dict, list))]
    if bad:
        raise ConfigError(f"TRAIL_CONFIG={path}: settings are flat NAME = value pairs, not tables or lists: {bad}")
    return {key.upper(): str(value).lower() if isinstance(value, bool) else str(value) for key, value in values.items()}


class SettingReader:
    """``read(NAME, default)`` over the environment, then the ``TRAIL_CONFIG`` file, then the default; ``integer``
    and ``number`` parse, naming the setting in the error."""

    def __init__(self) -> None:
        path = os.environ.get("TRAIL_CONFIG")
        self._file = _config_file(str(Path(path).resolve())) if path else {}

    def __call__(self, name: str, default: str | None = None) -> str | None:
        value = os.environ.get(name)
        return value if value is not None else self._file.get(name, default)

    def integer(self, name: str, default: int) -> int:
        return self._parse(name, default, int, "an integer")

    def number(self, name: str, default: float) -> float:
        return self._parse(name, default, float, "a number")

    def _parse(self, name: str, default: T, kind: Callable[[str], T], what: str) -> T:
        raw = self(name)
        if raw is None or raw.strip() == "":  # an empty variable counts as unset
            return default
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not {what}") from None


def setting_reader() -> SettingReader:
    return SettingReader()


@dataclass(frozen=True)
class TopicNames:
    """Topic names (env ``TRAIL_TOPIC_<ROLE>``)."""

    interactions: str = "interactions"
    items: str = "items"  # compacted: the latest ItemMeta per item_id
    trending: str = "trending-with-explanations"
    dlq: str = "interactions-dlq"

    @classmethod
    def from_env(cls) -> "TopicNames":
        defaults = cls()
        env = setting_reader()
        return cls(**{name: env(f"TRAIL_TOPIC_{name.upper()}", getattr(defaults, name))
                      for name in ("interactions", "items", "trending", "dlq")})

    def resolve(self, name_or_role: str) -> str:
        """``interactions``/``items``/``trending``/``dlq`` → the configured name; any other name as given."""
        return getattr(self, name_or_role, name_or_role) if name_or_role in self.__dataclass_fields__ else name_or_role


@dataclass(frozen=True)
class KafkaSettings:
    """Connection settings for kafka-python clients (env ``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_SECURITY_PROTOCOL``,
    ``KAFKA_SSL_CAFILE``, ``KAFKA_SSL_CERTFILE``, ``KAFKA_SSL_KEYFILE``, ``KAFKA_SASL_MECHANISM``,
    ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD``, ``KAFKA_BOOTSTRAP_TIMEOUT_MS``)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    bootstrap_timeout_ms: int = 10_000  # how long a client waits for a first broker before giving up

    @classmethod
    def from_env(cls) -> "KafkaSettings":
        env = setting_reader()
        return cls(
            bootstrap_servers=env("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers),
            security_protocol=env("KAFKA_SECURITY_PROTOCOL", cls.security_protocol),
            ssl_cafile=env("KAFKA_SSL_CAFILE"),
            ssl_certfile=env("KAFKA_SSL_CERTFILE"),
            ssl_keyfile=env("KAFKA_SSL_KEYFILE"),
            sasl_mechanism=env("KAFKA_SASL_MECHANISM"),
            sasl_username=env("KAFKA_SASL_USERNAME"),
            sasl_password=env("KAFKA_SASL_PASSWORD"),
            bootstrap_timeout_ms=env.integer("KAFKA_BOOTSTRAP_TIMEOUT_MS", cls.bootstrap_timeout_ms),
        )

    def client_config(self) -> dict[str, object]:
        """Keyword arguments shared by kafka-python's producer, consumer and admin client."""
        config: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
        }
        optional = {
            "ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile, "ssl_keyfile": self.ssl_keyfile,
            "sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
        }
        config.update({key: value for key, value in optional.items() if value})
        return config
