"""The test suite.

Hypothesis runs every property test without its per-example deadline (200 ms)
and without the "too slow" health check: CI runs the suite two at a time on a
loaded machine, where an example taking longer is the machine's, not the
code's.  What the properties assert is unchanged.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("umoc", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("umoc")
