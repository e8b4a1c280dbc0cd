"""The ``infoopt`` command line: one subcommand per pipeline step.

Each subcommand lives in ``infoopt/commands/<name>.py`` with a ``HELP`` line, a
``configure(parser)`` that adds its arguments and a ``run(args)`` that does the work.
Command modules keep their heavy imports (torch, pandas) inside ``run`` so that
``infoopt --help`` stays fast. A command that fails prints one line on stderr (what, where,
how to fix it) and exits with 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("prepare", "init", "train", "select", "hessian", "collect", "store")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infoopt", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the traceback, not one line"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"infoopt.commands.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        return args.run(args) or 0
    try:
        return args.run(args) or 0
    except Exception as error:  # every failure, as one line; --debug shows where it came from
        lines = str(error).strip().splitlines()
        message = lines[0] if lines else type(error).__name__
        print(f"infoopt {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
