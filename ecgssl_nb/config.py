"""Settings from text: `--set KEY=VALUE` items, config files and the stages' --help, read into the
dataclasses of `ecgssl_nb.core.settings` (which declares every field and its range, and checks
them when built). A bad item is one line naming it (`SettingError`, a UserError).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import replace
from typing import Any

from .core.errors import UserError
from .core.settings import RECORDED_ONLY, AugmentConfig, SettingError


def settings_help(cls: type, prefix: str = "") -> str:
    """One line per field of the settings dataclass `cls` (and of the settings it holds, as
    'augment.noise_sigma'): name, range, default, meaning. The epilog of the stages' --help."""
    lines = [] if prefix else [f"{cls.__name__} settings (--set FIELD=VALUE):"]
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            lines.append(settings_help(type(default), f"{prefix}{f.name}."))
            continue
        values = f.metadata.get("range")
        shown = "" if default is dataclasses.MISSING else f" (default {default!r})"
        lines.append(f"  {prefix}{f.name}: {values.text if values else '?'}{shown}; {f.metadata.get('what', '')}")
    return "\n".join(lines)


def as_dict(obj: Any) -> Any:
    """Dataclasses (nested) -> plain dicts, for result files."""
    if dataclasses.is_dataclass(obj):
        return {k: as_dict(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return list(obj)
    return obj


# --- resolved settings: --set KEY=VALUE and config files -----------------------------------------

_TYPE_WORDS = {
    int: "an integer",
    float: "a float",
    str: "text",
    bool: "true or false",
    dict: "a JSON object",
    tuple: "a JSON list",
}


_NESTED = {"AugmentConfig": AugmentConfig}  # settings dataclasses held by another one


def _field_types(cls) -> dict[str, tuple]:
    """{field: (base type, may be None)} of a settings dataclass, from its annotations."""
    out = {}
    for f in dataclasses.fields(cls):
        text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        parts = [p.strip() for p in text.split("|")]
        base = next((p for p in parts if p != "None"), "str")
        kinds = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "tuple": tuple}
        out[f.name] = (kinds.get(base, _NESTED.get(base, str)), "None" in parts)
    return out


def _convert(item: str, name: str, text: str, kind: type, nullable: bool) -> Any:
    """`text` as a value of `kind`; UserError '--set clip_grad=abc: clip_grad takes a float'."""
    if nullable and text.lower() in ("none", "null"):
        return None
    try:
        if kind is bool:
            low = text.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        if kind in (dict, tuple):
            value = json.loads(text)
            if kind is dict and isinstance(value, dict):
                return value
            if kind is tuple and isinstance(value, list):
                return tuple(value)
            raise ValueError
        return text
    except ValueError:
        pass
    raise UserError(f"--set {item}: {name} takes {_TYPE_WORDS[kind]}{' (or none)' if nullable else ''}")


def _change(cfg: Any, changes: dict, item: str, shown: str) -> None:
    """Put the value of one `--set` item into `changes` (type-checked; `shown` is the item as the
    user wrote it, for the message)."""
    types = _field_types(type(cfg))
    key, sep, text = str(item).partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set {shown!r} must look like KEY=VALUE, e.g. --set clip_grad=3")
    name, dot, entry = key.partition(".")
    if name not in types:
        raise UserError(
            f"--set {shown}: {name!r} is not a {type(cfg).__name__} setting; choose one of {', '.join(types)}"
        )
    kind, nullable = types[name]
    if dot and dataclasses.is_dataclass(kind):  # 'augment.noise_sigma=[0.01, 0.02]'
        if entry not in _field_types(kind):
            raise UserError(
                f"--set {shown}: {name} has no setting {entry!r}; choose one of {', '.join(_field_types(kind))}"
            )
        changes[name] = apply_settings(changes.get(name, getattr(cfg, name)), [f"{entry}={text}"], [shown])
    elif dataclasses.is_dataclass(kind):
        raise UserError(
            f"--set {shown}: set one entry of {name} at a time, e.g. {name}.{dataclasses.fields(kind)[0].name}=..."
        )
    elif dot:
        current = dict(changes.get(name, getattr(cfg, name)) or {})
        if kind is not dict or entry not in current:
            raise UserError(
                f"--set {shown}: {name} has no entry {entry!r}"
                + (f" (entries: {', '.join(map(str, current))})" if kind is dict else "")
            )
        old = current[entry]
        sub = float if isinstance(old, float) else int if isinstance(old, int) else str
        current[entry] = _convert(shown, shown.partition("=")[0].strip(), text.strip(), sub, False)
        changes[name] = current
    else:
        changes[name] = _convert(shown, shown.partition("=")[0].strip(), text.strip(), kind, nullable)


def apply_settings(cfg: Any, items: list[str] | tuple = (), shown: list[str] | tuple | None = None) -> Any:
    """`cfg` (a PretrainConfig or FinetuneConfig) with `--set KEY=VALUE` items applied, each value
    type-checked against the field's type and then range-checked by the settings class (all items
    at once, so that a check of two fields sees both): 'clip_grad=3', 'optimizer=adam-l2',
    'epochs.t=5' (one entry of a dict field), 'threshold_grid=[0.1,0.5]' (JSON for dicts and
    lists). `shown`: the items as the user wrote them (`reproduce` strips 'finetune.'), for the
    messages. UserError on one line naming the item: an unknown key, a value of the wrong type or
    out of its range."""
    shown = [str(i) for i in items] if shown is None else [str(i) for i in shown]
    changes: dict[str, Any] = {}
    for item, seen in zip(items, shown):
        _change(cfg, changes, str(item), seen)
    try:
        return replace(cfg, **changes) if changes else cfg
    except SettingError as exc:
        raise _blame(exc, list(items), shown) from None


def _blame(exc: SettingError, items: list, shown: list[str]) -> UserError:
    """The SettingError `exc` as one line naming the last item that set a field it involves:
    '--set finetune.epochs.t=-1: finetune.epochs.t must be an integer >= 0, got -1'."""
    for item, seen in reversed(list(zip(items, shown))):
        key = str(item).partition("=")[0].strip()
        if key.partition(".")[0] in exc.keys:
            written = seen.partition("=")[0].strip()
            prefix = written[: len(written) - len(key)] if written.endswith(key) else ""
            return UserError(f"--set {seen}: {prefix}{exc.key} {exc.problem}")
    return UserError(f"--set: {exc}")


def config_from_dict(cls, data: dict, source: str = "--config") -> Any:
    """A settings dataclass rebuilt from `as_dict` output (lists back to tuples); UserError naming
    `source` and the field for a missing or unknown field, a value of the wrong JSON type, or one
    out of its range (the class checks every field's range when built)."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a JSON object of {cls.__name__} settings")
    types = _field_types(cls)
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise UserError(f"{source}: {', '.join(unknown)} is not a {cls.__name__} setting")
    values = {k: tuple(v) if types[k][0] is tuple and isinstance(v, list) else v for k, v in data.items()}
    for k, v in values.items():
        if dataclasses.is_dataclass(types[k][0]) and isinstance(v, dict):
            values[k] = config_from_dict(types[k][0], v, f"{source}: {k}")
    for k, v in values.items():  # the JSON type first, as --set parses it; then the class checks the range
        kind, nullable = types[k]
        ok = (v is None and nullable) or (
            isinstance(v, bool)
            if kind is bool
            else isinstance(v, int) and not isinstance(v, bool)
            if kind is int
            else isinstance(v, (int, float)) and not isinstance(v, bool)
            if kind is float
            else isinstance(v, kind)
        )
        if not ok:
            raise UserError(f"{source}: {k} takes {_TYPE_WORDS[kind]}, got {v!r}")
    try:
        return cls(**values)
    except (TypeError, UserError) as exc:
        raise UserError(f"{source}: {exc}") from None


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type, example: str) -> None:
    """The options every training command shares: --set FIELD=VALUE (type- and range-checked by
    `apply_settings`), --config FILE (a resolved `cls` written by `reproduce`), --force; --help
    ends with every field's range and meaning (`settings_help`)."""
    name = cls.__name__
    parser.epilog = settings_help(cls)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the epilog's one line per field
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"override a {name} field, type- and range-checked, e.g. {example} (repeatable; the fields below)",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help=f"JSON file of the resolved {name} (instead of the profile's; `reproduce` writes one per "
        f"job); --set and the other options still apply on top",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="if OUT was made by another request, move it aside (nothing is deleted) and start afresh",
    )


def read_config(cls, path: str | os.PathLike) -> Any:
    """The settings dataclass saved as JSON in `path` (written by `reproduce` for its jobs)."""
    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as exc:
        raise UserError(f"--config {path}: not a readable JSON settings file ({exc})") from None
    return config_from_dict(cls, data, f"--config {path}")


def matched_settings(cfg: Any) -> dict:
    """`as_dict(cfg)` without the RECORDED_ONLY fields: what a reuse or a resume must match."""
    return {k: v for k, v in as_dict(cfg).items() if k not in RECORDED_ONLY}


def recorded_settings(cfg: Any) -> dict:
    """The RECORDED_ONLY fields of `cfg`: written beside the request, never compared."""
    return {k: getattr(cfg, k) for k in RECORDED_ONLY}
