"""``python -m riverbed ...`` is ``riverbed ...``."""

from __future__ import annotations

import sys

from riverbed.cli import main

sys.exit(main())
