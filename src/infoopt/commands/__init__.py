"""Subcommands of the ``infoopt`` command line (see ``infoopt.cli``)."""
