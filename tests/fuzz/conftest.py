"""Hypothesis profiles for the fuzz suite, and the one property every target must keep.

Profiles (none keeps a database of examples, so no files appear in the repository):

- "ci" (the default): a few examples per target, the same ones every run, so the whole
  suite adds well under a minute to the test run.
- "long": `FUZZ_EXAMPLES` examples per target (10,000 unless set), random each run; what
  `scripts/fuzz.sh` runs. `HYPOTHESIS_PROFILE=long` selects it too.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

CI_EXAMPLES = 50
LONG_EXAMPLES = 10_000

_relaxed = dict(
    database=None,
    deadline=None,  # the time bound is checked by `tests.fuzz.contract`, generously
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, **_relaxed)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES") or LONG_EXAMPLES),
    print_blob=True,
    **_relaxed,
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("long" if os.environ.get("FUZZ_EXAMPLES") else "ci")
)
