import pathlib
import sys

# Test the package in this checkout, not an installed copy.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
