# Sourced by tools/run and tools/test: install the missing Debian packages, then
# configure and compile build/. Idempotent: a second run installs nothing and
# only recompiles what changed.
set -euo pipefail

XGRAD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# XGRAD_SANITIZE=1 (tools/test --sanitize, tools/fuzz): a clang debug build in
# build-sanitize/ with AddressSanitizer, UndefinedBehaviorSanitizer and the libFuzzer
# targets; any sanitizer report ends the program with an error.
if [ "${XGRAD_SANITIZE:-0}" = 1 ]; then
    XGRAD_BUILD=${XGRAD_BUILD:-$XGRAD_ROOT/build-sanitize}
    XGRAD_SETUP_ARGS="-Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true"
    XGRAD_EXTRA_PACKAGES="${XGRAD_EXTRA_PACKAGES:-} clang libclang-rt-14-dev libomp-dev"
    export CXX=clang++
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
XGRAD_BUILD=${XGRAD_BUILD:-$XGRAD_ROOT/build}

# Everything xgrad needs to build, test and run its main example.
xgrad_packages=(
    g++ meson ninja-build pkg-config
    libxtensor-dev libxtensor-blas-dev libopenblas-openmp-dev
    libfmt-dev catch2 zlib1g-dev libpng-dev libcli11-dev
    dataset-fashion-mnist
    fortunes-min  # the text of the char_lm example
    gnuplot-nox   # fit(..., {.plot = "curves.png"}) draws with it
    libopenmpi-dev openmpi-bin
    libxsmm-dev
    ${XGRAD_EXTRA_PACKAGES:-}
)

xgrad_install_missing() {
    local missing=() p
    for p in "${xgrad_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "xgrad: installing missing packages: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

xgrad_build() {
    # XGRAD_SETUP_ARGS: extra `meson setup` options (tools/test --sanitize);
    # XGRAD_TARGETS: what to compile (default: everything).
    # shellcheck disable=SC2086
    # A sanitizer build configured with another compiler (before it moved to clang) is redone.
    if [ "${XGRAD_SANITIZE:-0}" = 1 ] && [ -f "$XGRAD_BUILD/meson-info/intro-compilers.json" ] \
        && ! grep -q clang "$XGRAD_BUILD/meson-info/intro-compilers.json"; then
        rm -rf "$XGRAD_BUILD"
    fi
    if [ -f "$XGRAD_BUILD/build.ninja" ]; then
        meson setup --reconfigure ${XGRAD_SETUP_ARGS:-} "$XGRAD_BUILD" "$XGRAD_ROOT" >/dev/null
    else
        meson setup ${XGRAD_SETUP_ARGS:-} "$XGRAD_BUILD" "$XGRAD_ROOT"
    fi
    # The compiler's output only matters when it fails.
    echo "xgrad: building in $XGRAD_BUILD"
    # shellcheck disable=SC2086
    if ! meson compile -C "$XGRAD_BUILD" ${XGRAD_TARGETS:-} > "$XGRAD_BUILD/compile.log" 2>&1; then
        cat "$XGRAD_BUILD/compile.log"
        echo "xgrad: the build failed (log: $XGRAD_BUILD/compile.log)" >&2
        exit 1
    fi
}

# XGRAD_SKIP_SETUP=1: a calling script has installed and built already.
if [ "${XGRAD_SKIP_SETUP:-0}" != 1 ]; then
    xgrad_install_missing
    xgrad_build
fi
