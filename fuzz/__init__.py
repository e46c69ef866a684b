"""Property-based fuzzing of the API against openapi.yaml (scripts, not collected by pytest)."""
