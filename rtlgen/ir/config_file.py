"""Reading configuration files: UTF-8 YAML or JSON, strictly.

Three mistakes that a plain ``yaml.safe_load`` lets through silently, or
turns into a crash far from the cause, are errors here, each naming the file,
the line and the fix:

- a key given twice in one mapping (YAML and JSON keep the last one);
- an unquoted type inside a flow mapping: in ``{result: fixed<12,4,RND,SAT>}``
  the commas separate entries, so YAML reads ``result: "fixed<12"`` and the
  keys ``4``, ``RND`` and ``SAT>``.  The message gives the type as it was
  meant and the two ways to write it (quoted, or block style);
- a file that is not UTF-8 text.

A YAML syntax error is reported on one line (file, line, column, problem);
the parser's full message is the error's ``detail``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from ..errors import RtlgenError

__all__ = ["read_config_file", "parse_config_text", "config_name", "key_list"]

# the start of a type whose closing '>' is missing: what is left of a type split at a comma
_OPEN_TYPE = re.compile(r"^\s*(ap_)?u?(fixed|int)\s*<[^>]*$", re.IGNORECASE)


class _SplitType(Exception):
    def __init__(self, key, text: str, line: int):
        super().__init__(text)
        self.key, self.text, self.line = key, text, line


class _DuplicateKey(Exception):
    def __init__(self, key, line: int, first_line: int):
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


def _is_empty(node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~")


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys and types split by flow-style commas."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            _check_split_types(node)
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue          # SafeLoader reports unhashable keys itself
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_split_types(node) -> None:
    """Raise _SplitType when a value like ``fixed<12`` is followed by keys like ``4``, ``SAT>``."""
    pairs = node.value
    for k, (key_node, value_node) in enumerate(pairs):
        for part_node, is_key in ((key_node, True), (value_node, False)):
            if not isinstance(part_node, yaml.ScalarNode) or not _OPEN_TYPE.match(part_node.value):
                continue
            if is_key and not _is_empty(value_node):
                continue
            parts = [part_node.value.strip()]
            for next_key, next_value in pairs[k + 1:]:
                if not isinstance(next_key, yaml.ScalarNode) or not _is_empty(next_value):
                    break
                parts.append(next_key.value.strip())
                if next_key.value.strip().endswith(">"):
                    break
            if len(parts) > 1:
                owner = None if is_key else key_node.value
                raise _SplitType(owner, ",".join(parts), part_node.start_mark.line + 1)


def _json_pairs(pairs):
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key, 0, 0)
        out[key] = value
    return out


def parse_config_text(text: str, where: str, json_format: bool = False):
    """Parse configuration text (YAML, or JSON with ``json_format``); ``where`` names it in messages."""
    try:
        if json_format:
            return json.loads(text, object_pairs_hook=_json_pairs)
        return yaml.load(text, Loader=_StrictLoader)
    except _SplitType as exc:
        whose = f" of {exc.key!r}" if exc.key is not None else ""
        raise RtlgenError(
            f"{where} line {exc.line}: the type {exc.text}{whose} was split at its commas by YAML's flow "
            f"style {{...}}: quote it, \"{exc.text}\", or write that mapping in block style "
            f"(one 'key: value' per line)") from None
    except _DuplicateKey as exc:
        at = f" line {exc.line}" if exc.line else ""
        first = f" (first given on line {exc.first_line})" if exc.first_line else ""
        raise RtlgenError(f"{where}{at}: key {exc.key!r} is given twice in one mapping{first}; "
                          "keep one of them") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "syntax error"
        raise RtlgenError(f"{where} is not valid YAML:{at}: {problem}", detail=str(exc)) from None
    except yaml.YAMLError as exc:
        raise RtlgenError(f"{where} is not valid YAML: {str(exc).splitlines()[0]}", detail=str(exc)) from None
    except json.JSONDecodeError as exc:
        raise RtlgenError(f"{where} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise RtlgenError(f"{where} is nested too deeply to be a configuration") from None


def read_config_file(path) -> dict:
    """Read and parse a configuration file; it must hold a mapping."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise RtlgenError(f"config file {path} is a folder: give the YAML or JSON file") from None
    except OSError as exc:
        raise RtlgenError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RtlgenError(f"config file {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}): save it as UTF-8") from None
    if "\0" in text:
        raise RtlgenError(f"config file {path} is not a text file (it holds NUL bytes): give the YAML or "
                          "JSON configuration")
    data = parse_config_text(text, f"config file {path}", json_format=path.suffix.lower() == ".json")
    if not isinstance(data, dict):
        raise RtlgenError(f"config file {path} must hold a mapping with at least an 'input' key")
    return data


def key_list(keys) -> str:
    """Configuration keys for a message, in a stable order whatever their types (YAML keys may be numbers)."""
    return "[" + ", ".join(sorted((repr(k) for k in keys), key=str)) + "]"


def config_name(cfg: dict, default: str) -> str:
    """The configuration's ``name`` (the default Verilog module name), else ``default``."""
    name = cfg.get("name")
    if name is None:
        return default
    if not isinstance(name, str) or not name.strip():
        raise RtlgenError(f"config 'name' must be a non-empty text (the core's name), got {name!r}: "
                          f"write it in quotes, e.g. name: \"core_{name}\"")
    return name
