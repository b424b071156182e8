"""``python -m beir_peft.cli``: the ``beir-peft`` command."""

import sys

from .app import main

sys.exit(main())
