#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine and run the whole suite.
# Used by the README's test command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Qt/OpenGL libraries and a virtual X server for the napari viewer tests.
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    if ! command -v Xvfb >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-cursor; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth libxcb-icccm4 libxcb-keysyms1 \
            libxcb-xinerama0 libxcb-cursor0 libxkbcommon-x11-0 libegl1 libgl1 libdbus-1-3 >/dev/null
    fi
fi

python3 -m venv .venv
# torch is pinned so pip takes the local CPU wheel instead of a multi-GB CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0 -e ".[test]"

# the project's lint and format rules (pyproject.toml [tool.ruff]) are part of the test
.venv/bin/ruff check .
.venv/bin/ruff format --check .

export HF_HUB_OFFLINE=1 QT_API=pyqt6
# pytest-xvfb starts a virtual display for the GUI tests; pytest-xdist runs the suite on two
# workers (the CI machine has two cores): 6 min instead of 10 on this machine's kind.
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
