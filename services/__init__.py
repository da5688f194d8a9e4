"""In-process Python feature modules, one package per migrated feature."""
