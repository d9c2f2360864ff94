"""``python -m convlab``: the ``convlab`` command, as torchrun starts it (``torchrun -m convlab train ...``)."""

import sys

from convlab.cli import main

sys.exit(main())
