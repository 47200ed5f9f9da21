"""``python -m worker`` runs the ``bwp-worker`` command line."""

from worker.cli import main

main()
