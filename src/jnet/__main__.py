"""``python -m jnet`` runs the command-line interface."""

from jnet.cli import main

raise SystemExit(main())
