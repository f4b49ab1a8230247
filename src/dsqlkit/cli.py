"""The ``dsqlkit`` command: ``dsqlkit local | bench | token | check``.

Each subcommand lives in the module of its concept and exposes ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them up, importing a module when its command runs so
that ``dsqlkit token`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: command name -> (module that implements it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "local": ("dsqlkit.local.command", "run a DSQL-compatible endpoint on this machine"),
    "bench": ("dsqlkit.bench.command", "benchmark drivers and connection patterns"),
    "token": ("dsqlkit.auth.command", "print an IAM auth token (for psql and other tools)"),
    "check": (
        "dsqlkit.local.rules.check",
        "check SQL files against DSQL's dialect without running them",
    ),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsqlkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen command's module is imported: the others cost nothing.
        if name == chosen:
            importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(args_list).parse_args(args_list)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
