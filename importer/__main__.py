"""``python -m importer`` is the same as ``convirza-import``."""

from .cli import main

raise SystemExit(main())
