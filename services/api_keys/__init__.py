"""API keys for span ingestion (the legacy ``/api_keys`` routes).

``POST /api_keys``, ``GET /api_keys`` and ``DELETE /api_keys/:key`` exactly as
the Go backend answers them, on the same SQLite table, so keys made on either
side work on both (and in the ingestion service's ``ValidateApiKey``). See
docs/migrating-api-keys-and-llm.md.
"""
from services.common import close_database
from services.common.db import open_at_startup
from services.registry import Service

from .app import ApiKeysService, create_app, new_id, new_key

PREFIXES = ("/api_keys",)

# dry_run: in a shadow replay of a write the shared database layer rolls back
# instead of committing. secret_paths: DELETE /api_keys/<key> carries the key.
SERVICE = Service(name="api_keys", prefixes=PREFIXES, app=create_app(), dry_run=True,
                  secret_paths=PREFIXES, startup=open_at_startup, shutdown=close_database)

__all__ = ["SERVICE", "ApiKeysService", "PREFIXES", "create_app", "new_id", "new_key"]
