"""The connector's debug log, without importing :mod:`logging` until something is logged.

``logging`` costs a cold start several milliseconds and the connector logs only on rare paths
(retries, waits, failed checks), so the import happens at the first message. Messages go to the
``dsqlkit`` logger, as before::

    import logging
    logging.getLogger("dsqlkit").setLevel(logging.DEBUG)
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs a cold start ~7 ms
    from typing import Any

NAME = "dsqlkit"


def debug(message: str, *args: Any) -> None:
    """``logging.getLogger("dsqlkit").debug(message, *args)``, importing logging only if the
    application has not (then nothing can be listening and the message is dropped)."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(NAME).debug(message, *args)
