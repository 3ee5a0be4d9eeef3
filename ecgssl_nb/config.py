"""Settings from text: `--set KEY=VALUE` items, config files and the stages' --help, read into the
dataclasses of `ecgssl_nb.core.settings` (which declares every field and its range, and checks
them when built). A bad item is one line naming it (`SettingError`, a UserError).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
from dataclasses import replace
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from .core.errors import UserError
from .core.settings import RECORDED_ONLY, SettingError


def settings_help(cls: type, prefix: str = "") -> str:
    """One line per field of the settings dataclass `cls` (nested ones as 'augment.noise_sigma'):
    name, range, default, meaning. The epilog of the stages' --help."""
    lines = [] if prefix else [f"{cls.__name__} settings (--set FIELD=VALUE):"]
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            lines.append(settings_help(type(default), f"{prefix}{f.name}."))
            continue
        shown = "" if default is dataclasses.MISSING else f" (default {default!r})"
        lines.append(f"  {prefix}{f.name}: {f.metadata['range'].text}{shown}; {f.metadata['what']}")
    return "\n".join(lines)


def as_dict(obj: Any) -> Any:
    """Dataclasses (nested) -> plain dicts, tuples -> lists, for result files."""
    obj = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    if isinstance(obj, dict):
        return {k: as_dict(v) for k, v in obj.items()}
    return list(obj) if isinstance(obj, tuple) else obj


# --- resolved settings: --set KEY=VALUE and config files -----------------------------------------
# JSON types are checked by pydantic v2 (`TypeAdapter` over the settings dataclasses, strictly;
# the class's `__post_init__` then checks the ranges). Not OmegaConf 2.4: no strict mode ("3"
# becomes 3 silently), a `DictConfig` back, and no `__post_init__` on a merge.

_TYPE_WORDS = {int: "an integer", float: "a float", str: "text", bool: "true or false"}
_TYPE_WORDS |= {dict: "a JSON object", tuple: "a JSON list"}


@functools.lru_cache(maxsize=None)
def _adapter(kind: Any, finite: bool = False) -> Any:
    """pydantic's validator of `kind` (a type, or a settings dataclass); `finite`: NaN and
    infinities refused (a `--set` float; a config file's NaN is left to the range check)."""
    from pydantic import ConfigDict, TypeAdapter  # ~30 ms at import; --help needs none of it

    return TypeAdapter(kind, config=ConfigDict(allow_inf_nan=False) if finite else None)


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    """{field: type} of a settings dataclass, its annotations resolved ('tuple | None')."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _kind(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed): `tuple | None` -> (tuple, True)."""
    args = get_args(tp) if get_origin(tp) in (Union, UnionType) else (tp,)
    rest = tuple(a for a in args if a is not type(None))
    return (rest[0] if len(rest) == 1 else Union[rest]), len(rest) < len(args)


def _words(kind: Any) -> str:
    """What a value of `kind` is, for a message: 'an integer', 'a JSON list'."""
    if dataclasses.is_dataclass(kind):
        return f"a JSON object of {kind.__name__} settings"
    return _TYPE_WORDS.get(get_origin(kind) or kind, str(kind))


def _parse(item: str, name: str, text: str, tp: Any) -> Any:
    """The `--set` text as a value of type `tp` (JSON for lists and objects, 'none' for None);
    UserError '--set clip_grad=abc: clip_grad takes a float'."""
    kind, nullable = _kind(tp)
    if nullable and text.lower() in ("none", "null"):
        return None
    try:
        if (get_origin(kind) or kind) in (dict, tuple):
            return _adapter(kind).validate_json(text, strict=True)
        return _adapter(kind, finite=True).validate_strings(text)  # '3', '1e-4', 'true', 'yes', text
    except ValueError:  # pydantic's ValidationError
        raise UserError(f"--set {item}: {name} takes {_words(kind)}{' (or none)' if nullable else ''}") from None


def _change(cfg: Any, changes: dict, item: str, shown: str) -> None:
    """Put one `--set` item's value, type-checked, into `changes` (`shown`: as the user wrote it)."""
    types = _field_types(type(cfg))
    key, sep, text = str(item).partition("=")
    key, written = key.strip(), shown.partition("=")[0].strip()
    if not sep or not key:
        raise UserError(f"--set {shown!r} must look like KEY=VALUE, e.g. --set clip_grad=3")
    name, dot, entry = key.partition(".")
    if name not in types:
        raise UserError(
            f"--set {shown}: {name!r} is not a {type(cfg).__name__} setting; choose one of {', '.join(types)}"
        )
    kind = _kind(types[name])[0]
    if dataclasses.is_dataclass(kind):  # 'augment.noise_sigma=[0.01, 0.02]'
        fields = _field_types(kind)
        if not dot:
            raise UserError(f"--set {shown}: set one entry of {name} at a time, e.g. {name}.{next(iter(fields))}=...")
        if entry not in fields:
            raise UserError(f"--set {shown}: {name} has no setting {entry!r}; choose one of {', '.join(fields)}")
        changes[name] = apply_settings(changes.get(name, getattr(cfg, name)), [f"{entry}={text}"], [shown])
    elif dot:
        if kind is not dict:  # 'lr.x=1': a number has no entries (and dict() of it would crash)
            raise UserError(f"--set {shown}: {name} has no entry {entry!r}")
        current = dict(changes.get(name, getattr(cfg, name)) or {})
        known = {**dict(getattr(cfg, name) or {}), **current}  # an entry of cfg's, or of an earlier item's value
        if entry not in known:
            raise UserError(f"--set {shown}: {name} has no entry {entry!r} (entries: {', '.join(map(str, known))})")
        old = known[entry]  # an entry takes the type of the value it replaces
        current[entry] = _parse(shown, written, text.strip(), type(old) if type(old) in (float, int, bool) else str)
        changes[name] = current
    else:
        changes[name] = _parse(shown, written, text.strip(), types[name])


def apply_settings(cfg: Any, items: list[str] | tuple = (), shown: list[str] | tuple | None = None) -> Any:
    """`cfg` (a PretrainConfig or FinetuneConfig) with `--set KEY=VALUE` items applied, each
    type-checked, then all range-checked at once by the class: 'clip_grad=3', 'epochs.t=5' (one
    entry of a dict field), 'threshold_grid=[0.1,0.5]' (JSON for dicts and lists). `shown`: the
    items as the user wrote them, for the messages. UserError on one line naming the item."""
    shown = [str(i) for i in items] if shown is None else [str(i) for i in shown]
    changes: dict[str, Any] = {}
    for item, seen in zip(items, shown):
        _change(cfg, changes, str(item), seen)
    try:
        return replace(cfg, **changes) if changes else cfg
    except SettingError as exc:
        raise _blame(exc, list(items), shown) from None


def check_items(items: Any) -> list[str]:
    """The `settings` of a stage function: a list of `--set KEY=VALUE` texts (not one text)."""
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise UserError(
            f"settings must be a list of KEY=VALUE items (as --set takes), e.g. ['epochs=2'], got {items!r}"
        )
    return list(items)


def _blame(exc: SettingError, items: list, shown: list[str]) -> UserError:
    """The SettingError `exc` as one line naming the last item that set a field it involves:
    '--set finetune.epochs.t=-1: finetune.epochs.t must be an integer >= 0, got -1'; a problem of
    a whole field names the last item that set it whole ('epochs={}', not a later 'epochs.t=2')."""
    touched = [(str(item).partition("=")[0].strip(), seen) for item, seen in zip(items, shown)]
    touched = [(key, seen) for key, seen in touched if key.partition(".")[0] in exc.keys]
    whole = [(key, seen) for key, seen in touched if key == exc.key and "." not in key]
    if not touched:
        return UserError(f"--set: {exc}")
    key, seen = (whole or touched)[-1]
    written = seen.partition("=")[0].strip()
    prefix = written[: len(written) - len(key)] if written.endswith(key) else ""
    return UserError(f"--set {seen}: {prefix}{exc.key} {exc.problem}")


def config_from_dict(cls, data: dict, source: str = "--config") -> Any:
    """A settings dataclass rebuilt from `as_dict` output read back from JSON, strictly typed ("3"
    is no integer); UserError naming `source` and the field for a missing or unknown field, a
    wrong JSON type, or a value out of its range."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a JSON object of {cls.__name__} settings")
    types = _field_types(cls)
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise UserError(f"{source}: {', '.join(unknown)} is not a {cls.__name__} setting")
    for k, v in data.items():  # a settings class held by `cls` first, so that its errors name it
        if dataclasses.is_dataclass(types[k]) and isinstance(v, dict):
            config_from_dict(types[k], v, f"{source}: {k}")
    try:
        return _adapter(cls).validate_json(json.dumps(data), strict=True)
    except ValueError as exc:  # pydantic's ValidationError: a missing field or a wrong JSON type
        raise _wrong_type(exc.errors()[0], cls, data, source) from None
    except UserError as exc:  # a range, checked by the class
        raise UserError(f"{source}: {exc}") from None


def _wrong_type(error: dict, cls: type, data: dict, source: str) -> UserError:
    """pydantic's first error as one line naming `source` and the field: '--config x.json: lr
    takes a float, got 'fast''."""
    key = error["loc"][0] if error["loc"] else ""
    if error["type"] == "missing":
        return UserError(f"{source}: {key} is missing (a {cls.__name__} setting without a default)")
    if key in data:
        return UserError(f"{source}: {key} takes {_words(_kind(_field_types(cls)[key])[0])}, got {data[key]!r}")
    return UserError(f"{source}: {error['msg']}")


def add_settings_arguments(parser: argparse.ArgumentParser, cls: type, example: str) -> None:
    """The options every training command shares: --set FIELD=VALUE (`apply_settings`), --config
    FILE (a resolved `cls`), --force; --help ends with every field (`settings_help`)."""
    name = cls.__name__
    parser.epilog = settings_help(cls)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the epilog's one line per field
    set_help = f"override a {name} field, type- and range-checked, e.g. {example} (repeatable; the fields below)"
    config_help = f"JSON file of the resolved {name} (instead of the profile's; `reproduce` writes one per job); "
    config_help += "--set and the other options still apply on top"
    force_help = "if OUT was made by another request, move it aside (nothing is deleted) and start afresh"
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=set_help)
    parser.add_argument("--config", metavar="FILE", help=config_help)
    parser.add_argument("--force", action="store_true", help=force_help)


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
