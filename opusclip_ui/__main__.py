"""``python -m opusclip_ui``: see ``opusclip_ui.cli``."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
