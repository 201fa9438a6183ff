"""Workers: `dramatiq jobs` runs the actors, `periodiq jobs` triggers the minute tick.

Logging is configured first (HERALD_LOG_FORMAT, HERALD_LOG_LEVEL), in place of the
handler dramatiq or periodiq set up. The broker is built from the settings and
installed before any actor module is imported, as Dramatiq requires (and before
`jobs.metrics`, see `jobs.broker`).
"""

from jobs.broker import install_broker
from models.logs import configure_logging
from models.settings import get_settings

configure_logging(get_settings())
broker = install_broker(get_settings())

from jobs import actors  # noqa: E402,F401  (declares the actors on `broker`)
