#!/usr/bin/env bash
# Installs the Debian packages the interop tests call, when they are missing.
# Tests that need a tool skip with a message when it is absent, but `make test`
# installs them first so that CI exercises every interop path.
set -euo pipefail

need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
command -v coap-client-openssl >/dev/null 2>&1 || need+=(libcoap3-bin)
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)

if ((${#need[@]} == 0)); then
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	SUDO=sudo
else
	SUDO=
fi
echo "test-deps: installing ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
