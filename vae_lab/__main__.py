"""`python -m vae_lab …` runs the command-line interface."""

import sys

from vae_lab.cli.main import main

sys.exit(main())
