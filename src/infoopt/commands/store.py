"""``infoopt store``: list the result store, remove an entry, prune what is not in use."""

from __future__ import annotations

import argparse

from infoopt.commands.common import add_store_argument

HELP = "list the stored results (training runs, Hessian tables), remove or prune them"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("list", "prune", "remove"),
        help="list: every entry, its size and whether results/ uses it; prune: remove the "
        "entries not in use (and, with --partial, the states of killed jobs); remove: one entry",
    )
    parser.add_argument("key", nargs="?", help="remove: the entry's key (a unique prefix)")
    parser.add_argument(
        "--yes", action="store_true", help="prune/remove: delete (without it: only show)"
    )
    parser.add_argument(
        "--partial", action="store_true", help="prune: also the states killed jobs resume from"
    )
    add_store_argument(parser)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def run(args: argparse.Namespace) -> int:
    import shutil

    from infoopt.store import Store

    store = Store(args.store)
    entries = store.entries()
    if args.action == "list":
        for entry in entries:
            use = "in use" if entry.in_use() else "unused"
            print(
                f"{entry.kind:8} {entry.key[:12]}  {_size(entry.size):>9}  {use:6}  "
                f"{entry.record['created']}  {entry.record['label']}"
            )
        partials = store.partials()
        used = sum(e.size for e in entries if e.in_use())
        print(
            f"{store.root}: {len(entries)} entries, {_size(sum(e.size for e in entries))} "
            f"({_size(used)} in use), {len(partials)} unfinished job state(s)"
        )
        return 0
    if args.action == "remove":
        if not args.key:
            raise ValueError("infoopt store remove needs the key of the entry (a prefix)")
        doomed = [store.find(args.key).path]
    else:
        doomed = [e.path for e in entries if not e.in_use()]
        if args.partial:
            doomed += store.partials(idle=True)
    for path in doomed:
        print(f"{'removing' if args.yes else 'would remove'} {path}")
        if args.yes:
            shutil.rmtree(path)
    if not args.yes and doomed:
        print("nothing removed: add --yes to delete")
    return 0
