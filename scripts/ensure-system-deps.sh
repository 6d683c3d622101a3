#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real, when they are missing:
# chromium (the browser tests, through playwright-core), firefox-esr (the page in Firefox, over
# WebDriver BiDi), openssl (certificates for TLS tests) and curl (the README's quick start).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/firefox-esr ] || missing+=(firefox-esr)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)   # the README's quick start (test/readme.test.ts)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-system-deps: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "ensure-system-deps: installing ${missing[*]} from Debian's packages" >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
