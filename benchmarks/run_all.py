"""Run every benchmark in this folder; each writes its report to results/benchmarks/."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in sorted(HERE.glob("*.py")):
    if script.name != "run_all.py":
        subprocess.run([sys.executable, str(script)], check=True)
