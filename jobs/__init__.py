"""herald's workers: the Dramatiq actors, the minute tick, and the broker they share.

`dramatiq jobs` and `periodiq jobs` import this package as their broker module and then ask
Dramatiq for its broker, so this package boots the worker process when one of them imports
it (`jobs.worker.boot`: logging, the broker, the actors), and only then. Imported by anything
else (the CLI, the admin, the services, the tests), it does nothing: a process that sends
messages builds its broker when it first sends (`jobs.dispatch`).
"""

from jobs.worker import boot, imported_by_worker_command

if imported_by_worker_command(__name__):
    broker = boot()
