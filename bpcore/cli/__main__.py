"""``python -m bpcore.cli``: the same as the ``bpcore`` command and ``python -m bpcore``."""

import sys

from . import main

sys.exit(main())
