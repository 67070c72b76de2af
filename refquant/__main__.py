"""``python -m refquant ...`` is the same as the ``refquant`` console script."""

from refquant.apps.cli import main

raise SystemExit(main())
