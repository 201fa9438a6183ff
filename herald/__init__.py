"""herald: scheduled report delivery. This package holds the entry points (CLI, demo)."""
