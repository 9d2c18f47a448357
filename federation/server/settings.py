"""Service settings: a frozen dataclass filled from a TOML file, then the environment, then flags.

One mechanism for the hub (``hub.toml``, ``IPDN_HUB_*``) and the node (``node.toml``, ``IPDN_NODE_*``):
each field ``name`` may be set in the file, overridden by ``<PREFIX><NAME>`` in the environment,
overridden by an explicit value (a command-line flag); values are coerced to the field's type.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from federation.protocol.errors import ConfigError

_CASTS: dict[str, type] = {"int": int, "float": float, "bool": bool}


def _coerce(name: str, kind: type, value: Any) -> Any:
    if kind is str:
        if isinstance(value, str):
            return value
    elif kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
    elif not isinstance(value, bool):
        try:
            return kind(value)
        except (TypeError, ValueError):
            pass
    raise ConfigError(f"{name}: {value!r} is not a valid {kind.__name__}")


def load_settings(cls: type[Any], path: Path, *, env_prefix: str, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None, required: tuple[str, ...] = (),
                  missing_ok: bool = False) -> dict[str, Any]:
    """The typed values for dataclass ``cls`` (fields not given anywhere keep their defaults).

    Raises:
        ConfigError: the file is missing (unless ``missing_ok``) or malformed, a key is unknown,
            a required key is absent, or a value has the wrong type.
    """
    env = os.environ if env is None else env
    types = {f.name: _CASTS.get(str(f.type), str) for f in dataclasses.fields(cls)}
    try:
        values: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        if not missing_ok:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from e
        values = {}
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    unknown = set(values) - set(types)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    for name in types:
        if env_prefix + name.upper() in env:
            values[name] = env[env_prefix + name.upper()]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    missing = set(required) - set(values)
    if missing:
        raise ConfigError(f"{path}: missing keys {sorted(missing)}")
    return {k: v if types[k] is str and isinstance(v, Path) else _coerce(k, types[k], v) for k, v in values.items()}
