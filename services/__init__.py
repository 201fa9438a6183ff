"""herald's operations, one implementation each, below every face (the CLI, the admin,
`jobs.shell`, and the HTTP API to come).

Each operation takes who is asking (`access.Viewer`, an admin user; or `access.OPERATOR`, the
`herald` command's user), checks their permission itself, validates, writes, records the change
in the audit, and returns plain data. Importing a service starts no broker and touches no
logging: a send builds its broker when it dispatches (`jobs.dispatch`).
"""
