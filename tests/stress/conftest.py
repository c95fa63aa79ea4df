import sys
from pathlib import Path

# The stress tests run `modelpool serve` with the e2e tests' harness (server_process)
# and share their mix (mix.py, also used by bench/soak.py) by module name.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))
