#!/usr/bin/env bash
# Set up (once) and run s2s-pipeline from a fresh checkout.
#
#   ./run.sh demo   transcribe the bundled sample speech into runs/demo
#   ./run.sh test   run the test suite
#   ./run.sh setup  only create .venv and install
#
# Needs Python 3.11+. Creates .venv beside this script. When that environment has
# no torch yet, the CPU build torch==2.13.0 is installed first (no CUDA wheels);
# GPU users install their CUDA build of torch into .venv first (see README) and it
# is kept: the constraint below stops pip from replacing it.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${S2S_VENV:-.venv}
TORCH_SPEC=${S2S_TORCH_SPEC:-torch==2.13.0}

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    local py="$VENV/bin/python"
    "$py" -m pip install -q --upgrade pip
    if ! "$py" -c "import torch" 2>/dev/null; then
        "$py" -m pip install -q "$TORCH_SPEC"
    fi
    local constraints
    constraints=$(mktemp)
    "$py" -c "import torch; print('torch==' + torch.__version__)" >"$constraints"
    "$py" -m pip install -q -c "$constraints" -e ".[base,tts,teacher,dask,parity,test]"
    rm -f "$constraints"
}

export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=90

case "${1:-demo}" in
    setup) setup ;;
    demo)
        setup
        "$VENV/bin/s2s" transcribe samples/speech --out runs/demo
        ;;
    test)
        setup
        shift || true
        PREFECT_HOME=$(mktemp -d) "$VENV/bin/python" -m pytest -q --durations=15 "$@"
        ;;
    *) echo "usage: $0 demo|test|setup" >&2; exit 2 ;;
esac
