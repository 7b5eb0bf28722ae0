#!/usr/bin/python3
"""make_fixtures.py OUTDIR -- regenerate every committed test fixture with the PyTorch
reference (Debian's python3-torch). Runs each tools/fixtures_*.py module's main(outdir)."""
import importlib, pathlib, sys

def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
    out.mkdir(parents=True, exist_ok=True)
    here = pathlib.Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    for f in sorted(here.glob("fixtures_*.py")):
        print("fixtures:", f.stem)
        importlib.import_module(f.stem).main(out)

if __name__ == "__main__":
    main()
