"""``python -m labelport``: the same as the ``labelport`` command."""

import sys

from labelport.cli import main

sys.exit(main())
