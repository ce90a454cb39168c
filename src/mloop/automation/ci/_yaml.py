"""YAML for workflow files: keys in the order written, multi-line scripts as literal blocks, no line folding."""

from __future__ import annotations

from typing import Any

import yaml


class _WorkflowDumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML has no type hints here
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # lists indented under their key, as both providers' docs write them

    def ignore_aliases(self, data: Any) -> bool:
        return True  # a list used twice is written twice, not as an &anchor


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_WorkflowDumper.add_representer(str, _str)


def dump(data: dict[str, Any]) -> str:
    """``data`` as YAML; a blank line before each top-level entry and each job under ``jobs:``."""
    text = yaml.dump(data, Dumper=_WorkflowDumper, sort_keys=False, width=10_000, allow_unicode=True)
    out: list[str] = []
    in_jobs = False
    for line in text.splitlines(keepends=True):
        top_level = line[:1] not in (" ", "-", "\n")
        if top_level:
            in_jobs = line.startswith("jobs:")
        job = in_jobs and line.startswith("  ") and line[2:3] not in (" ", "-")
        if out and (top_level or job):
            out.append("\n")
        out.append(line)
    return "".join(out)
