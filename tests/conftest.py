"""Settings shared by every test folder."""

from hypothesis import Phase, settings

# bench/mutation.sh runs the unit tests once per mutant. One failing example kills a
# mutant, so this profile does not shrink (shrinking a failure can take a minute), has
# no deadline (mutmut's trampolines slow every call) and keeps no example database
# from one mutant to the next.
settings.register_profile(
    "mutation", phases=[Phase.explicit, Phase.generate], deadline=None, database=None
)
