"""``python -m minise COMMAND``: the same as the ``minise`` command (and what ``mpiexec`` runs on
each worker: ``mpiexec -n 4 python -m minise train ...``)."""
import sys

from .cli import main

sys.exit(main())
