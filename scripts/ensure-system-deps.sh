#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real, when they are missing:
# chromium (the browser tests, through playwright-core), firefox-esr (the page in Firefox, over
# WebDriver BiDi), openssl (certificates for TLS tests), curl (the README's quick start), nginx and
# caddy (the reverse-proxy configs in deploy/, run for real in front of a server), and
# systemd-analyze (checks deploy/starsock.service), redis-server (the control plane of a cluster of
# nodes) and haproxy (the sticky-session load balancer in front of them, deploy/haproxy.cfg).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/firefox-esr ] || missing+=(firefox-esr)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)   # the README's quick start (test/readme.test.ts)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/bin/caddy ] || missing+=(caddy)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-system-deps: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "ensure-system-deps: installing ${missing[*]} from Debian's packages" >&2
# Packages with a service (nginx, caddy, redis-server, haproxy) must not start it on install: the tests start their own,
# on loopback, and a system nginx on port 80 would be a process nobody asked for. policy-rc.d
# answering 101 ("action forbidden") is Debian's switch for that; ours is removed afterwards.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
