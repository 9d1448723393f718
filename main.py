"""Launch Concept Explorer: `python main.py [WORKSPACE]`."""

import sys

from explorer.ui.app import run

if __name__ == "__main__":
    sys.exit(run())
