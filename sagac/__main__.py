"""`python -m sagac` is the `sagac` command."""

import sys

from sagac.cli import main

sys.exit(main())
