"""`python -m genmix` is the same as the `genmix` command."""

import sys

from genmix.cli import main

if __name__ == "__main__":
    sys.exit(main())
