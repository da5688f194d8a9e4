"""The gorilla session-cookie vectors from ``shared/vectors``.

Read from the shared/ folder beside the repository (or ``$SHARED_DIR``) when it
is there — it is the source of truth — else from the copy committed here, so a
clone without shared/ still tests against the real Go-minted cookies.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

NAME = "gorilla_session_cookies.json"
REPO = Path(__file__).resolve().parents[2]


def vectors_path() -> Path:
    candidates = [Path(os.environ["SHARED_DIR"]) / "vectors" / NAME] if os.environ.get("SHARED_DIR") else []
    candidates += [REPO.parent / "shared" / "vectors" / NAME, Path(__file__).with_name(NAME)]
    return next(p for p in candidates if p.exists())


def load_vectors() -> dict[str, Any]:
    return json.loads(vectors_path().read_text())
