"""How run/legacy/ was made (run once, by the code *before* the package was reorganised — git
commit bf49518): 8 of the config's 16 iterations, through the command line only, so this script
still documents the steps after the code moved.

    cd tests/data/legacy_run && python make_fixture.py
"""

import subprocess
import sys
import tempfile
from pathlib import Path

here = Path(__file__).resolve().parent
with tempfile.TemporaryDirectory() as tmp:
    config = Path(tmp) / "config.yml"
    config.write_text((here / "config.yml.in").read_text().replace("{root}", here.as_posix()))
    subprocess.run([sys.executable, "-m", "autosr", "train", str(config), "--out", str(here / "run"),
                    "--set", "train.total_iter=8"], check=True)
