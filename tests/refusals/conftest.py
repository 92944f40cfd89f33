"""The refusal tables share one workspace fixture (tests.refusals.harness)."""

from tests.refusals.harness import workspace  # noqa: F401
