import sys

from infoopt.cli import main

sys.exit(main())
