#!/usr/bin/env bash
# One entry point for a fresh machine. Creates or refreshes the virtual environments it needs, then:
#   bash dev.sh serve [ARGS…]                 start the standalone comparison app (python -m vae_lab serve);
#                                            installs only the run-time needs (requirements.txt)
#   bash dev.sh test  [--stack S] [ARGS…]     run the test suite on every supported stack (current, a1111,
#                                            gradio4; see docs/testing.md), or on stack S only; ARGS go to pytest
#   bash dev.sh lint                          ruff and mypy (configured in pyproject.toml)
#   bash dev.sh bench [ARGS…]                 run the CPU benchmarks (python bench/run.py)
#
# The current stack lives in .venv in the checkout. The other stacks are big (A1111's torch 2.1.2 is the
# CUDA build, ~5 GB installed), so they live outside it, where a fresh clone finds them again:
#   ${VAE_LAB_STACKS_DIR:-~/.cache/vae-lab/stacks}/<stack>-<hash of .ci/stacks/<stack>.txt>
set -euo pipefail
cd "$(dirname "$0")"
export GRADIO_ANALYTICS_ENABLED=False PYTHONUNBUFFERED=1

STACKS=(current a1111 gradio4)
STACKS_DIR=${VAE_LAB_STACKS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vae-lab/stacks}

pip_install() {  # pip_install PYTHON ARGS… — quiet, without the index-location noise of this machine
    local py=$1
    shift
    "$py" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "^WARNING: Location '.*' is ignored" || true; }
    return "${PIPESTATUS[0]}"
}

find_python() {  # find_python 3.10 — an interpreter of that minor version, or fail with a clear line
    local want=$1 candidate
    for candidate in "python$want" \
        "$(command -v pyenv >/dev/null && pyenv prefix "$want" 2>/dev/null | head -1)/bin/python" \
        "$HOME"/.pyenv/versions/"$want".*/bin/python python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "error: no Python $want found (install it, e.g. 'pyenv install $want')" >&2
    return 1
}

# The current stack: .venv in the checkout. "runtime" installs requirements.txt (what `serve` needs),
# "dev" requirements-dev.txt (tests, lint: a superset). The stamp says which set is installed.
ensure_venv() {
    local level=${1:-dev} stamp=.venv/.vae-lab-requirements want_runtime want_dev
    if [ ! -x .venv/bin/python ]; then
        "$(find_python 3.11)" -m venv .venv
    fi
    want_runtime="runtime $(sha256sum requirements.txt | cut -c1-64)"
    want_dev="dev $(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-64)"
    local have=""
    [ -f "$stamp" ] && have=$(cat "$stamp")
    if [ "$have" = "$want_dev" ]; then
        return 0
    fi
    if [ "$level" = runtime ]; then
        [ "$have" = "$want_runtime" ] && return 0
        pip_install .venv/bin/python -r requirements.txt
        echo "$want_runtime" > "$stamp"
    else
        pip_install .venv/bin/python -r requirements-dev.txt
        echo "$want_dev" > "$stamp"
    fi
}

# An extra stack's venv, built once per content of its requirements file and kept in STACKS_DIR.
# Prints the venv's python. A build that did not finish (no .complete) is thrown away and redone.
ensure_stack() {
    local stack=$1 reqs=.ci/stacks/$1.txt
    if [ "$stack" = current ]; then
        ensure_venv dev >&2
        echo .venv/bin/python
        return 0
    fi
    [ -f "$reqs" ] || { echo "error: unknown stack '$stack' (one of: ${STACKS[*]})" >&2; return 2; }
    local version hash venv
    version=$(sed -n 's/^# python: *//p' "$reqs" | head -1)
    hash=$(sha256sum "$reqs" | cut -c1-12)
    venv=$STACKS_DIR/$stack-$hash
    mkdir -p "$STACKS_DIR"
    (
        # One builder at a time per stack (two CI runs on one machine share the cache).
        if command -v flock >/dev/null; then flock 9; fi
        if [ ! -f "$venv/.complete" ]; then
            echo "building the $stack stack in $venv (Python $version; once per requirements change)" >&2
            rm -rf "$venv"
            "$(find_python "$version")" -m venv "$venv"
            pip_install "$venv/bin/python" -r "$reqs" >&2
            "$venv/bin/python" -m pip check >&2 || echo "warning: pip check reports conflicts in $stack" >&2
            touch "$venv/.complete"
            # Older builds of this stack are dead weight (gigabytes): drop them.
            find "$STACKS_DIR" -maxdepth 1 -name "$stack-*" ! -name "$stack-$hash" ! -name '*.lock' \
                -exec rm -rf {} + 2>/dev/null || true
        fi
    ) 9>"$STACKS_DIR/$stack.lock"
    echo "$venv/bin/python"
}

ensure_chromium() {
    # Browser tests drive Debian's chromium; install it once where we may.
    if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 \
            || echo "warning: could not install chromium; browser tests will not run" >&2
    fi
}

# Run pytest on one stack; its log goes to stdout and to $2. pytest's "no tests ran" (5) is a failure,
# and so is a run where nothing passed (all skipped): a stack that proves nothing must not look green.
run_stack() {
    local stack=$1 log=$2 py rc
    shift 2
    py=$(ensure_stack "$stack") || return $?
    echo "=== stack $stack: $("$py" -c 'import sys, torch, gradio, PIL, numpy; print("Python %d.%d.%d" % sys.version_info[:3], "torch", torch.__version__, "gradio", gradio.__version__, "Pillow", PIL.__version__, "numpy", numpy.__version__)' 2>/dev/null)"
    set +e
    VAE_LAB_STACK=$stack "$py" -m pytest "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" = 0 ] && ! tail -1 "$log" | grep -q " passed"; then
        echo "error: stack $stack ran no passing test" >&2
        rc=1
    fi
    return "$rc"
}

summary_line() {  # the last line pytest printed (its "N passed, M skipped in Ts" line)
    grep -E "(passed|failed|error|skipped|no tests ran).* in [0-9.]+s" "$1" | tail -1 | sed -E 's/^=+ //; s/ =+$//'
}

cmd_test() {
    local stacks=("${STACKS[@]}")
    if [ "${1:-}" = --stack ]; then
        [ $# -ge 2 ] || { echo "usage: bash dev.sh test [--stack current|a1111|gradio4] [PYTEST ARGS…]" >&2; exit 2; }
        stacks=("$2")
        shift 2
    elif [[ "${1:-}" == --stack=* ]]; then
        stacks=("${1#--stack=}")
        shift
    fi
    ensure_chromium
    local stack failed=0 rc start
    LOGDIR=$(mktemp -d)
    trap 'rm -rf "$LOGDIR"' EXIT
    local logdir=$LOGDIR
    declare -A result seconds
    for stack in "${stacks[@]}"; do
        start=$SECONDS
        if run_stack "$stack" "$logdir/$stack.log" "$@"; then rc=0; else rc=$?; fi
        seconds[$stack]=$((SECONDS - start))
        [ "$rc" = 0 ] || failed=1
        result[$stack]="rc=$rc  $(summary_line "$logdir/$stack.log" 2>/dev/null || true)"
    done
    if [ "${#stacks[@]}" -gt 1 ] || [ -n "${CI:-}" ]; then
        echo
        echo "=== summary (one line per stack: pytest's summary, seconds including any venv build)"
        for stack in "${stacks[@]}"; do
            printf '%-8s %s  (%ss)\n' "$stack" "${result[$stack]}" "${seconds[$stack]}"
        done
    fi
    return "$failed"
}

cmd=${1:-}
shift || true
case "$cmd" in
    serve)
        ensure_venv runtime
        if [ $# -eq 0 ]; then
            # Default: ./models/VAE (created; "Get VAEs" downloads into it), plus the real TAEF2
            # pair that ships with the tests, so there is something to compare at once.
            mkdir -p models/VAE
            set -- --vae-dir models/VAE --vae-dir tests/assets/taef2
        fi
        exec .venv/bin/python -m vae_lab serve "$@"
        ;;
    test)
        cmd_test "$@"
        ;;
    lint)
        ensure_venv dev
        rc=0
        echo "=== ruff check"
        .venv/bin/python -m ruff check . || rc=1
        echo "=== mypy"
        .venv/bin/python -m mypy || rc=1
        exit "$rc"
        ;;
    bench)
        ensure_venv dev
        exec .venv/bin/python bench/run.py "$@"
        ;;
    *)
        echo "usage: bash dev.sh serve|test|lint|bench [ARGS…]" >&2
        exit 2
        ;;
esac
