"""README's config reference agrees with Pulumi.yaml's schema, the one place
defaults are written: the same keys, the same defaults."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def schema_rows() -> dict[str, object]:
    """Every documented key with its default: object keys one level deep, as the README lists them."""
    config = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    rows: dict[str, object] = {}
    for full_key, spec in config.items():
        key = full_key.split(":", 1)[1]
        default = spec["default"]
        if spec["type"] == "object" and default and all(not isinstance(v, dict) or not v for v in default.values()):
            rows.update({f"{key}.{name}": value for name, value in default.items()})
        else:
            rows[key] = default
    return rows


def readme_rows() -> dict[str, str]:
    """key -> default cell of the README's `## Config reference` table; "a / b" rows split."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([^`]+)`", cells[0])
        defaults = [part.strip() for part in cells[2].split(" / ")] if len(keys) > 1 else [cells[2]]
        assert len(defaults) == len(keys), line
        prefix = keys[0].rsplit(".", 1)[0] + "." if "." in keys[0] else ""
        for index, (key, default) in enumerate(zip(keys, defaults)):
            rows[key if index == 0 or "." in key else prefix + key] = default
    return rows


def shown(value: object) -> str:
    """A default as the README writes it: `text`, `""` for the empty string, JSON otherwise."""
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(value)}`"


def test_readme_lists_every_key_of_the_schema_and_no_other():
    assert sorted(readme_rows()) == sorted(schema_rows())


def test_readme_defaults_are_the_schema_defaults():
    readme = readme_rows()
    wrong = {key: (readme[key], shown(value)) for key, value in schema_rows().items()
             if key in readme and readme[key] != shown(value)}
    assert wrong == {}, "README default, Pulumi.yaml default"


def test_the_check_reads_the_table():
    rows = readme_rows()
    assert rows["target.cniConfDir"] == "`/etc/cni/net.d`" and rows["drain.gracePeriodSeconds"] == "`-1`"
    assert shown({}) == "`{}`" and shown(False) == "`false`"
