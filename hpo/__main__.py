"""``python -m hpo``: the ``hpo`` command."""

import sys

from hpo.cli import main

sys.exit(main())
