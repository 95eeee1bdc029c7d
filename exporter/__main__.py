"""Entry point for ``python -m exporter``."""

from exporter.app import main

raise SystemExit(main())
