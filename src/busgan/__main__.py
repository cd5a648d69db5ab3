"""``python -m busgan`` runs the CLI."""

import sys

from busgan.cli import main

sys.exit(main())
