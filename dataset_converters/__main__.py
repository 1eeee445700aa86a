"""``python -m dataset_converters``: see :mod:`dataset_converters.cli`."""

import sys

from .cli import main

sys.exit(main())
