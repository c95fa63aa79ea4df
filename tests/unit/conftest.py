"""Hypothesis settings for the runs of bench/mutation.sh."""

import os

from hypothesis import Phase, settings

# bench/mutation.sh runs the unit tests once per mutant (mutmut sets MUTANT_UNDER_TEST).
# One failing example kills a mutant, so there: no shrinking (shrinking a failure can
# take a minute), no deadline (mutmut's trampolines slow every call) and no example
# database carried from one mutant to the next.
settings.register_profile(
    "mutation", phases=[Phase.explicit, Phase.generate], deadline=None, database=None
)
if os.environ.get("MUTANT_UNDER_TEST"):
    settings.load_profile("mutation")
