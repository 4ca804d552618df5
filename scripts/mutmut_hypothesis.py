"""A Hypothesis profile for mutation runs, loaded into pytest by mutmut only.

pyproject.toml's [tool.mutmut] passes `-p scripts.mutmut_hypothesis --hypothesis-profile=mutmut`
(mutmut copies scripts/ into mutants/, where pytest runs). The profile is Hypothesis' built-in "ci"
one (derandomized, no example database: a mutant's verdict must not depend on what an earlier
mutant's run found) that also tolerates what mutmut does and a test run never does: run the same
tests more than once in one process (its instrumented run, its clean run, then each mutant in a
child forked from it), which Hypothesis reports as `differing_executors` for property tests that
are methods of a test class.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "mutmut",
    parent=settings.get_profile("ci"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
