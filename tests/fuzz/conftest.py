"""Hypothesis profiles for the fuzz suite, and the one property every target must keep.

Profiles (none keeps a database of examples, and hypothesis's caches go to the temporary
folder, so no files appear in the repository):

- "ci" (the default): a few examples per target, the same ones every run, so the whole
  suite adds well under a minute to the test run.
- "long": `FUZZ_EXAMPLES` examples per target (10,000 unless set), random each run; what
  `scripts/fuzz.sh` runs. `HYPOTHESIS_PROFILE=long` selects it too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

# hypothesis keeps caches (constants it found in the code) under its home directory, by
# default `.hypothesis/` in the working directory: keep them out of the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "voicechat-bot-hypothesis")

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
