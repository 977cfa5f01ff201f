"""``python -m bridge``: the same as the ``ami-bridge`` command."""

from bridge.cli import main

raise SystemExit(main())
