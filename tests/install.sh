#!/bin/sh
# `make install` into a scratch DESTDIR, then a program built only from the
# installed headers and disco.pc (pkg-config) runs against the installed
# library: what a user of the package gets.
set -eu
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
make -s install DESTDIR="$dest" >/dev/null
prefix=$(sed -n 's/^prefix=//p' disco.pc)
pcdir="$dest$prefix/lib/pkgconfig"
[ -f "$pcdir/disco.pc" ] || { echo "disco.pc not installed"; exit 1; }
for h in disco.h disco/task.h disco/channel.h disco/error.h disco/status.h; do
    [ -f "$dest$prefix/include/$h" ] || { echo "$h not installed"; exit 1; }
done
cat > "$dest/use.c" <<'C'
#include <disco.h>
#include <stdio.h>
static int twice(void *arg, void **result) { *result = (void *)((long)arg * 2); return 0; }
int main(void) {
    void *r = 0;
    if (disco_task_join(disco_async(twice, (void *)21), &r) != 0 || (long)r != 42) return 1;
    disco_channel *ch = disco_channel_new(sizeof(long), 4);
    long x = 7, y = 0;
    if (disco_put(ch, &x) || disco_take(ch, &y) || y != 7) return 1;
    disco_channel_free(ch);
    puts("installed disco works");
    return disco_sched_stop();
}
C
# A sanitized build's library needs the same flags in the program.
san=$(sed -n 's/^SAN_FLAGS = //p' Makefile)
flags=$(PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs disco)
${CC:-cc} $san -o "$dest/use" "$dest/use.c" $flags
LD_LIBRARY_PATH="$dest$prefix/lib" "$dest/use"
