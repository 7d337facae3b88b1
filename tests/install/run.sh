#!/usr/bin/env bash
# tests/install/run.sh SOURCE_DIR: the README's "Using xgrad in your project" recipes, run as
# written on a fresh prefix (run by tools/test; about 3 minutes on 2 cores, most of it the
# library's build).
#  1. Install only the library (tests, examples and tools off) into a temporary prefix, build
#     the README's first program with pkg-config from the multiarch pkgconfig directory, run
#     it without LD_LIBRARY_PATH; the installed library must keep its runpath to the OpenMP
#     OpenBLAS and the Cflags must not carry Open MPI's include paths.
#  2. Configure a parent project in a debug build that takes xgrad as a subproject: only the
#     library is built, at -O3.
set -uo pipefail
src=$(cd "${1:?usage: run.sh SOURCE_DIR}" && pwd)
work=$(mktemp -d /tmp/xgrad_install.XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
check() {  # check NAME COMMAND...: one test case
    local name=$1
    shift
    if "$@" >"$work/out" 2>&1; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        sed 's/^/    /' "$work/out" | tail -n 20
        failed=$((failed + 1))
    fi
}
multiarch=$(c++ -print-multiarch)
prefix=$work/prefix

# 1. Install, as the README says.
check "meson setup --prefix with tests, examples and tools off" \
    meson setup "$work/build" "$src" --prefix="$prefix" -Dtests=false -Dexamples=false -Dtools=false
check "only the library is built" bash -c "! ninja -C '$work/build' -t targets all | grep -qE '^(tests|examples|tools)/'"
check "meson install" meson install -C "$work/build"
export PKG_CONFIG_PATH=$prefix/lib/$multiarch/pkgconfig
cat >"$work/app.cpp" <<'CPP'
#include <iostream>
#include <xgrad/xgrad.hpp>

int main() {
    xgrad::manual_seed(0);
    auto w = xgrad::randn<double>({3, 2}, /*requires_grad=*/true);
    auto x = xgrad::randn<double>({4, 3});
    auto loss = xgrad::mean(xgrad::square(xgrad::relu(xgrad::matmul(x, w)) - 1.0));
    loss.backward();
    std::cout << "grad " << w.grad().size() << "\n";
}
CPP
check "pkg-config finds xgrad in <prefix>/lib/$multiarch/pkgconfig" pkg-config --exists xgrad
check "pkg-config Cflags carry no Open MPI paths" bash -c "! pkg-config --cflags xgrad | grep -qi mpi"
check "g++ app.cpp \$(pkg-config --cflags --libs xgrad)" \
    bash -c "cd '$work' && g++ -std=c++20 app.cpp \$(pkg-config --cflags --libs xgrad) -o app"
check "the program starts without LD_LIBRARY_PATH" bash -c "env -u LD_LIBRARY_PATH '$work/app' | grep -q 'grad 6'"
lib=$prefix/lib/$multiarch/libxgrad.so
check "installed libxgrad.so keeps its runpath to the OpenMP OpenBLAS" \
    bash -c "readelf -d '$lib' | grep -E 'RUNPATH|RPATH' | grep -q openblas-openmp"
check "the program loads the OpenMP OpenBLAS" \
    bash -c "env -u LD_LIBRARY_PATH ldd '$work/app' | grep libopenblas | grep -q openblas-openmp"

# 2. A subproject in a debug parent: configured only (the library's flags are what matter).
# Without the installed copy on PKG_CONFIG_PATH, which dependency('xgrad') would prefer.
unset PKG_CONFIG_PATH
parent=$work/parent
mkdir -p "$parent/subprojects"
ln -s "$src" "$parent/subprojects/xgrad"
cp "$work/app.cpp" "$parent/app.cpp"
cat >"$parent/meson.build" <<'MESON'
project('app', 'cpp', default_options : ['cpp_std=c++20', 'buildtype=debug'])
xgrad_dep = dependency('xgrad', fallback : ['xgrad', 'xgrad_dep'])
executable('app', 'app.cpp', dependencies : xgrad_dep)
MESON
check "a parent project configures with xgrad as a subproject" meson setup "$parent/build" "$parent"
check "the subproject builds the library only" \
    bash -c "! ninja -C '$parent/build' -t targets all | grep -qE 'subprojects/xgrad/(tests|examples|tools)/'"
check "the subproject's library compiles at -O3 in the debug parent" \
    python3 -c "
import json, sys
cmds = json.load(open('$parent/build/compile_commands.json'))
lib = [c['command'] for c in cmds if 'libxgrad' in c['output']]
app = [c['command'] for c in cmds if 'app.p' in c['output']]
sys.exit(0 if lib and all('-O3' in c for c in lib) and app and all('-O0' in c for c in app) else 1)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
