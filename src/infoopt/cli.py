"""The ``infoopt`` command line: one subcommand per pipeline step.

Each subcommand lives in ``infoopt/commands/<name>.py`` with a ``HELP`` line, a
``configure(parser)`` that adds its arguments and a ``run(args)`` that does the work.
Command modules keep their heavy imports (torch, pandas) inside ``run`` so that
``infoopt --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("prepare", "init", "train", "select", "hessian", "collect")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infoopt", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"infoopt.commands.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
