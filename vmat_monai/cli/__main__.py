"""``python -m vmat_monai.cli``: the ``vmat-monai`` command."""

import sys

from vmat_monai.cli import main

sys.exit(main())
