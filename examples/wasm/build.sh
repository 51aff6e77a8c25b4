#!/bin/sh
# Builds loop.wasm (a WASI preview 1 command) from loop.c, and modules.json, the modules-table
# row that app.json's wasm node names. Needs clang and lld for wasm32 and a WASI libc:
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
$CC --target=wasm32-wasi $SYSROOT -O2 -Wall -Wextra -o loop.wasm loop.c -lm -Wl,--strip-all
python3 - <<'PY'
import base64, json, pathlib

code = base64.b64encode(pathlib.Path("loop.wasm").read_bytes()).decode()
row = {"name": "loop", "manifest": {"title": "Loop (wasm)", "in": 1, "out": 1}, "code": code}
pathlib.Path("modules.json").write_text(json.dumps({"modules": [row]}, indent=1) + "\n")
PY
echo "built loop.wasm ($(wc -c < loop.wasm) bytes) and modules.json"
