"""The one YAML reader and writer for sweep specs and training configs.

Reading follows YAML 1.2 for scalars: only ``true``/``false`` are booleans (so the
augmentation preset ``off`` stays a string, where YAML 1.1 would make it ``False``) and
``1e-3`` is a number. A duplicate key is an error rather than a silent overwrite. Writing
quotes strings that YAML 1.1 readers would take for booleans and puts short lists and small
mappings of scalars on one line.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

__all__ = ["YamlError", "load_yaml", "dump_yaml", "read_text_file"]

# A spec or config is a few KB; more is a wrong file, read whole into memory otherwise.
MAX_TEXT_BYTES = 1 << 20


class YamlError(ValueError):
    """Text that is not valid YAML, or has a duplicate key; one line naming where."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and floats, and errors for duplicate keys."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Dumper(yaml.SafeDumper):
    pass


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    inline = len(data) <= 4 and all(
        _is_scalar(v) or (isinstance(v, list) and all(_is_scalar(x) for x in v)) for v in data.values()
    )
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=inline)


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=all(_is_scalar(x) for x in data))


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)


def read_text_file(path: str | os.PathLike) -> str:
    """A small UTF-8 text file's content. FileNotFoundError passes; anything else that is not
    such a file is a one-line YamlError: a named pipe or device (which would block or never
    end on open), a folder, an unreadable path, a huge or non-UTF-8 file."""
    path = Path(path)
    allowed = "allowed: a regular UTF-8 YAML file"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise YamlError(f"{path}: cannot read ({exc.strerror}); {allowed}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a pipe, socket or device)"
        raise YamlError(f"{path}: {kind}; {allowed}")
    if info.st_size > MAX_TEXT_BYTES:
        raise YamlError(f"{path}: {info.st_size} bytes; {allowed} of at most {MAX_TEXT_BYTES} bytes")
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise YamlError(f"{path}: cannot read ({exc.strerror}); {allowed}") from None
    except UnicodeDecodeError as exc:
        raise YamlError(f"{path}: not UTF-8 text (byte {exc.start}); {allowed}") from None


def load_yaml(text: str, source: str = "<yaml>") -> Any:
    """Parse YAML text; a syntax error or duplicate key is a one-line `YamlError`."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = exc.problem or exc.context or "unreadable"
        raise YamlError(f"{source}: {where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise YamlError(f"{source}: nested too deep to read; allowed: a few levels of mappings and lists") from None


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100)
