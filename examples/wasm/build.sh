#!/bin/sh
# Builds loop.wasm and primes.wasm (WASI preview 1 commands) from loop.c and primes.c, and
# modules.json: the modules-table rows that app.json's wasm nodes name. Needs clang and lld
# for wasm32 and a WASI libc:
#   Debian/Ubuntu: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32
# Debian installs the WASI libc where clang looks by default; elsewhere (wasi-sdk, other
# distributions) set WASI_SYSROOT, e.g. WASI_SYSROOT=/usr/share/wasi-sysroot.
set -eu
cd "$(dirname "$0")"
CC=${CC:-clang}
if [ -z "${WASI_SYSROOT:-}" ] && [ -d /usr/share/wasi-sysroot ]; then
    WASI_SYSROOT=/usr/share/wasi-sysroot
fi
SYSROOT=${WASI_SYSROOT:+--sysroot=$WASI_SYSROOT}
# -O2 for the loop; --strip-all drops names and debug sections, so the module stays small.
for name in loop primes; do
    $CC --target=wasm32-wasi $SYSROOT -O2 -Wall -Wextra -o $name.wasm $name.c -lm -Wl,--strip-all
    echo "built $name.wasm ($(wc -c < $name.wasm) bytes)"
done
python3 - <<'PY'
import base64, json, pathlib

rows = [
    {
        "name": name,
        "manifest": {"title": f"{name} (wasm)", "in": 1, "out": 1},
        "code": base64.b64encode(pathlib.Path(f"{name}.wasm").read_bytes()).decode(),
    }
    for name in ("loop", "primes")
]
pathlib.Path("modules.json").write_text(json.dumps({"modules": rows}, indent=1) + "\n")
PY
echo "built modules.json"
