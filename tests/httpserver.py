"""Moved to `testkit.httpserver` (shared with bench/); kept so branches written before the move still import."""

from testkit.httpserver import *  # noqa: F401,F403
