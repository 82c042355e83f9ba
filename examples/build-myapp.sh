#!/usr/bin/env bash
# Builds the image the seed's Deployment runs, myapp:1.0 (or the tag given as $1): a busybox
# userland whose httpd serves, on port 8080, a page naming the pod it runs in. It is imported
# into the cluster (usable on every node) with `troupe image import`.
set -euo pipefail
tag="${1:-myapp:1.0}"
here="$(cd "$(dirname "$0")" && pwd)"
troupe=(node "$here/../dist/cli/main.js")
[ -x /bin/busybox ] || { echo "build-myapp: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/www"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
tar -C "$root" -cf "$work/myapp.tar" .
"${troupe[@]}" image import "$work/myapp.tar" "$tag" \
  --change 'EXPOSE 8080' \
  --change 'CMD ["/bin/sh", "-c", "echo \"hello from $(hostname)\" > /www/index.html; httpd -f -p 8080 -h /www & trap \"kill $!; exit 0\" TERM; wait"]'
