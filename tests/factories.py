"""Moved to `testkit.factories` (shared with bench/); kept so branches written before the move still import."""

from testkit.factories import *  # noqa: F401,F403
