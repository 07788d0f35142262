#!/usr/bin/env bash
# One entry point for a fresh machine. Creates or refreshes .venv, installs what is needed, then:
#   bash dev.sh serve [ARGS…]   start the standalone comparison app (python -m vae_lab serve)
#   bash dev.sh test  [ARGS…]   run the whole test suite (pytest)
#   bash dev.sh bench [ARGS…]   run the CPU benchmarks (python bench/run.py)
set -euo pipefail
cd "$(dirname "$0")"
export GRADIO_ANALYTICS_ENABLED=False PYTHONUNBUFFERED=1

ensure_venv() {
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    local stamp=.venv/.vae-lab-requirements
    local want
    want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-64)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt 2>&1 \
            | { grep -v "^WARNING: Location '.*' is ignored" || true; }
        echo "$want" > "$stamp"
    fi
}

ensure_chromium() {
    # Browser tests drive Debian's chromium; install it once where we may.
    if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 \
            || echo "warning: could not install chromium; browser tests will not run" >&2
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
    serve)
        ensure_venv
        if [ $# -eq 0 ]; then
            # Default: ./models/VAE (created; "Get VAEs" downloads into it), plus the real TAEF2
            # pair from ../shared/models when this checkout has one beside it.
            mkdir -p models/VAE
            set -- --vae-dir models/VAE
            if [ -f ../shared/models/taef2_decoder.pth ]; then
                set -- "$@" --vae-dir ../shared/models
            fi
        fi
        exec .venv/bin/python -m vae_lab serve "$@"
        ;;
    test)
        ensure_venv
        ensure_chromium
        exec .venv/bin/python -m pytest "$@"
        ;;
    bench)
        ensure_venv
        exec .venv/bin/python bench/run.py "$@"
        ;;
    *)
        echo "usage: bash dev.sh serve|test|bench [ARGS…]" >&2
        exit 2
        ;;
esac
