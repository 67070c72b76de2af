"""``python -m refquant ...`` is the same as the ``refquant`` console script."""

from refquant.cli import main

raise SystemExit(main())
