"""herald's data layer: tables and enums, sessions, settings, migrations, errors and redaction,
the report-definition format, and pure scheduling math (cron, cadence, periods, spread).

Nothing here imports from `tenantdb`, `renderers`, `delivery`, `pipeline`, `jobs`, `services`,
`admin` or `herald` (`tests/test_layers.py`).
"""
