"""`python -m runtime` is the `tiss` command."""

import sys

from runtime.cli import main

sys.exit(main())
