"""A run's life, below the workers and the faces: its statuses (`lifecycle`, the only module that
writes one), a worker's hold on it (`leases`), the steps query → render → deliver, the letter,
`send_if`, auto-pause, metrics, and documents made on demand (`documents`).

Plain functions of ids: the actors (`jobs.actors`) call them one message each, `in_process`
calls them one after the other, and the services call what a face asks for.
"""
