"""``python -m bpcore``: the same as the ``bpcore`` command."""

import sys

from .cli import main

sys.exit(main())
