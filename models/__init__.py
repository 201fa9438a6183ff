"""herald's data layer: settings, tables, sessions, tenancy and the report-definition format.

Nothing here imports from `renderers`, `delivery`, `jobs` or `admin`.
"""
