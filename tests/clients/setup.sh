#!/usr/bin/env bash
# Installs the real protocol clients the end-to-end tests drive: Prometheus 2.42 (and
# promtool) from Debian's packages, and a Python venv under target/ with the
# OpenTelemetry SDK and its OTLP exporters, the Elasticsearch client and cramjam
# (snappy). Idempotent: a second run only checks. Tests find the venv at
# target/clients-venv (or $KK_CLIENTS_VENV) and Prometheus on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # Debian's package starts a service where it can; the tests run their own instances
  # (on ports of their own), so only the one the installation started is stopped, never
  # a test's that runs meanwhile.
  pkill -x prometheus 2>/dev/null || true
fi

VENV=${KK_CLIENTS_VENV:-target/clients-venv}
REQUIREMENTS=tests/clients/requirements.txt
STAMP="$VENV/.requirements"
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQUIREMENTS" "$STAMP"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$STAMP"
fi
echo "clients: $(prometheus --version 2>&1 | head -n1); python venv $VENV"
