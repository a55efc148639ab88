#!/usr/bin/env bash
# Installs the third-party DICOM peers the interop tests use (dcmtk, Orthanc, dicom3tools, iproute2) from
# Debian's packages, when they are missing and we may install them. Without root, it only says what is
# missing: the interop tests then skip with that reason.
set -euo pipefail
need=()
[ -x /usr/bin/echoscu ] || need+=(dcmtk)
[ -x /usr/sbin/Orthanc ] || need+=(orthanc)
[ -x /usr/bin/dciodvfy ] || need+=(dicom3tools)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: missing system packages (${need[*]}); interop tests that need them will be skipped" >&2
  exit 0
fi
echo "installing system packages: ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
