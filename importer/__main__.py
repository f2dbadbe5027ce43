"""``python -m importer`` is the same as ``convirza-import``."""

from .cli.commands import main

raise SystemExit(main())
