"""Where the tests find ``shared/`` (oracle networks, real images): ``$SGF_SHARED_DIR`` or the
folder beside the checkout. Tests that need it skip cleanly when it is absent."""

import os
from pathlib import Path

SHARED = Path(os.environ.get("SGF_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
ORACLE = SHARED / "oracle" / "A"
DATA = SHARED / "data"
