# Sourced by hack/build-test-images: the images the upstream conformance suite
# (critest, cri-tools v1.36) asks for, under their names, built from busybox.
# Facts each one must honour are noted beside it. (The one image pinned by a
# hard-coded upstream digest, test-image-digest, cannot be rebuilt.)

crt=k8s-staging-cri-tools

# nginx stand-in: main process named nginx, "master process" in its cmdline,
# /var/run/nginx.pid, HTTP 200 on :80.
mkdir -p "$work/nginx-bin/usr/sbin"
gcc -static -Os -s -o "$work/nginx-bin/usr/sbin/nginx" "$here/images/nginx.c"
derive nginx-real nginx --clear=config.entrypoint --config.entrypoint /usr/sbin/nginx
add_layer nginx-real "$work/nginx-bin"
push nginx-real e2e-test-images/nginx:1.14-2

# httpd: HTTP 200 on :80, "httpd" in its log.
mkdir -p "$work/httpd/var/www"
echo '<html><body>It works!</body></html>' > "$work/httpd/var/www/index.html"
derive httpd busybox --clear=config.cmd --config.entrypoint sh --config.entrypoint -c \
  --config.entrypoint 'echo "httpd: serving /var/www on :80" >&2; exec httpd -f -v -p 80 -h /var/www'
add_layer httpd "$work/httpd"
push httpd e2e-test-images/httpd:2.4.39-4

# nonewprivs: default command a setuid-root program printing its euid.
mkdir -p "$work/nnp/usr/local/bin"
gcc -static -Os -s -o "$work/nnp/usr/local/bin/nnp" "$here/images/nnp.c"
chmod 4755 "$work/nnp/usr/local/bin/nnp"
derive nonewprivs busybox --clear=config.cmd --config.cmd nnp
add_layer nonewprivs "$work/nnp"
push nonewprivs e2e-test-images/nonewprivs:1.3

# hostnet-nginx: HTTP 200 on :12003 (the pod uses the host network).
derive hostnet-nginx nginx-real --config.env NGINX_PORT=12003
push hostnet-nginx $crt/hostnet-nginx-amd64:latest

# predefined-group: User 1000 whose primary group is 1000 and who is also a
# member of group 50000 in /etc/group.
mkdir -p "$work/pgroup/etc" "$work/pgroup/home/default-user"
cp "$work/rootfs/etc/passwd" "$work/rootfs/etc/group" "$work/pgroup/etc/"
echo 'default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh' >> "$work/pgroup/etc/passwd"
printf 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' >> "$work/pgroup/etc/group"
derive pgroup busybox --config.user 1000
add_layer pgroup "$work/pgroup"
push pgroup $crt/test-image-predefined-group:latest

# The image's User as CRI reports it (uid when numeric, else username).
for spec in user-uid:1002 user-username:www-data user-uid-group:1003:1004 user-username-group:www-data:1004; do
  name=${spec%%:*} user=${spec#*:}
  derive "$name" busybox --config.user "$user"
  push "$name" "$crt/test-image-$name:latest"
done

# Distinct images (each with its own marker file), and one image with three tags.
marked() {  # marked TAG MARKER
  mkdir -p "$work/marker-$2"
  touch "$work/marker-$2/$2"
  derive "$1" busybox
  add_layer "$1" "$work/marker-$2"
}
marked tag-test test;         push tag-test "$crt/test-image-tag:test"
marked tag-all all;           push tag-all "$crt/test-image-tag:all"
marked latest latest;         push latest "$crt/test-image-latest:latest"
for n in 1 2 3; do
  marked "image-$n" "test-image-$n"; push "image-$n" "$crt/test-image-$n:latest"
done
marked same same-image
for n in 1 2 3; do push same "$crt/test-image-tags:$n"; done
