"""Where the tests find the repository's files, from any test module's depth."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"  # public conformance vectors, vendored with their licences (README.md there)
CORPUS = ROOT / "tests" / "corpus"
IMPORT_SAMPLE = ROOT / "docs" / "examples" / "import-events.csv"  # the CSV a staff member imports in the guide
