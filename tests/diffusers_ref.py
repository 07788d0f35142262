"""Moved to `testkit.diffusers_ref` (shared with bench/); kept so branches written before the move still import."""

from testkit.diffusers_ref import *  # noqa: F401,F403
