"""Workers: `dramatiq jobs` runs the actors, `periodiq jobs` triggers the minute tick.

The broker is built from the settings and installed before any actor module is
imported, as Dramatiq requires.
"""

from jobs.broker import install_broker
from models.settings import get_settings

broker = install_broker(get_settings())

from jobs import actors  # noqa: E402,F401  (declares the actors on `broker`)
