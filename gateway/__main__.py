"""Entry point for ``python -m gateway``: the same command as ``pbx-gateway``."""

from gateway.cli import main

raise SystemExit(main())
