"""Print the lines of requirements.txt that install on another Python (Linux x86-64), markers
evaluated for that version and dropped: `python scripts/requirements_for_python.py 3.14`.

.ci/run installs this set for Python 3.14 into a Python 3.11 environment (.venv/notf), so the
tests run the app exactly without what Community Cloud's Python 3.14 would lack (TensorFlow).
"""

import sys
from pathlib import Path

from packaging.requirements import Requirement

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"


def lines_for(python: str) -> list[str]:
    env = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
           "platform_machine": "x86_64", "platform_system": "Linux"}
    kept = []
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            kept.append(f"{req.name}{req.specifier}")
    return kept


if __name__ == "__main__":
    print("\n".join(lines_for(sys.argv[1])))
