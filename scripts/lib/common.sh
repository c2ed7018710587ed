# SPDX-License-Identifier: BSD-3-Clause
# Shared by scripts/check and scripts/quickstart: Debian packages and the
# default build. Source it; it defines functions only.

DISCO_PACKAGES="build-essential autoconf automake libtool pkg-config \
libhwloc-dev libcmocka-dev libbenchmark-dev libtbb-dev libfabric-dev libfabric-bin \
openmpi-bin libopenmpi-dev \
libibverbs-dev librdmacm-dev libssl-dev gcc-aarch64-linux-gnu qemu-user"

# Installs the missing Debian packages with apt-get when running as root;
# otherwise names them and fails.
ensure_packages() {
    local missing="" p
    for p in $DISCO_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "disco: installing missing packages:$missing" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 && apt-get install -y -qq $missing >&2 && return 0
        echo "disco: apt-get failed; install these packages:$missing" >&2
        return 1
    fi
    echo "disco: missing Debian packages:$missing" >&2
    echo "disco: run as root: apt-get install$missing" >&2
    return 1
}

# build_tree DIR [configure flags...]: configures (once per flag set) and
# builds the library and everything `make check` needs in DIR.
build_tree() {
    local dir=$1; shift
    local flags="$*"
    (cd "$DISCO_TOP" && { [ -x configure ] || autoreconf -fi >/dev/null; }) || return 1
    mkdir -p "$DISCO_TOP/$dir"
    cd "$DISCO_TOP/$dir" || return 1
    if [ ! -f Makefile ] || [ "$(cat .configure-flags 2>/dev/null)" != "$flags" ] ||
       [ "$DISCO_TOP/configure" -nt Makefile ]; then
        "$DISCO_TOP/configure" $flags >configure.out 2>&1 || { cat configure.out >&2; return 1; }
        echo "$flags" > .configure-flags
    fi
    make -j"$(nproc)" >make.out 2>&1 || { tail -50 make.out >&2; return 1; }
}
