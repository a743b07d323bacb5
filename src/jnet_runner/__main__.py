"""``python -m jnet_runner MODEL INPUT... --out DIR``."""

import sys

from jnet_runner import main

sys.exit(main())
