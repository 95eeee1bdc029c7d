"""Write docs/configuration.md from the settings dataclasses (``exporter.config.options()``).

``tests/test_config_doc.py`` fails when the committed file differs from what this writes, so
the reference cannot drift from the code. Run ``.venv/bin/python tools/config_doc.py`` after
adding or changing a setting.
"""

from __future__ import annotations

import sys
from pathlib import Path

from exporter.app import GROUPS_BY_COMMAND
from exporter.config import ENV_PREFIX, options

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `exporter/config.py` by `tools/config_doc.py`; a test keeps it in step.",
        f"Every setting is a flag, an environment variable `{ENV_PREFIX}<NAME>` and a key of the",
        "YAML file given by `--config-file` (keys are the names below). Precedence: flag, then",
        "environment, then file, then default. A command reads only the groups it uses (the",
        "commands are named in each heading). Durations take Go/Prometheus durations (`500ms`,",
        "`30s`, `5m`, `1h`, `1m30s`, `1d`) or plain seconds (`90`); a value that is not finite",
        "(YAML `.inf` or `.nan`) is always refused, zero or a negative value where it makes no",
        "sense. Listen addresses are `host:port`, `[IPv6]:port` or",
        "`:port` (every interface). Bad values print one exact message each and exit with code 2;",
        "validate a setup with `calico-exporter check-config MODE` (cluster, node, probe, demo).",
    ]
    group = ""
    for opt in options():
        if opt.group != group:
            group = opt.group
            commands = ", ".join(f"`{c}`" for c, groups in GROUPS_BY_COMMAND.items()
                                 if group in groups)
            lines += ["", f"## {group.replace('_', ' ')} ({commands})", "",
                      "| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
        default = ",".join(opt.default) if isinstance(opt.default, tuple) else str(opt.default)
        shown = f"`{default}`" if default else "(empty)"
        lines.append(f"| `{opt.flag}` | `{opt.env}` | {shown} | {opt.help} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    DOC.write_text(render())
    sys.stderr.write(f"wrote {DOC}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
