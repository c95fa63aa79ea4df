import sys
from pathlib import Path

# Let the tests here import the shared harness module by name.
sys.path.insert(0, str(Path(__file__).parent))
