#!/usr/bin/env bash
# Dependency audit: pip-audit over what `make install` put in the virtualenv.
#
#   chaos/audit.sh              # audits .venv (VENV=... for another one)
#
# pip-audit asks an online advisory service (PyPI's JSON API by default, or
# OSV with --vulnerability-service osv). Where neither is reachable, it cannot
# audit anything; without --strict it would then print "No known
# vulnerabilities found" and pass. --strict makes that case fail instead.
# pip-audit runs from its own virtualenv, so the project's stays untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
AUDIT_VENV=${AUDIT_VENV:-${TMPDIR:-/tmp}/envoy-pip-audit}
SERVICE=${SERVICE:-pypi}   # or osv

test -x "$VENV/bin/python" || { echo "no virtualenv at $VENV: run make install first" >&2; exit 2; }
if ! test -x "$AUDIT_VENV/bin/pip-audit"; then
  python3 -m venv "$AUDIT_VENV"
  "$AUDIT_VENV/bin/pip" install --quiet pip-audit
fi

requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
"$VENV/bin/python" -m pip freeze --exclude-editable > "$requirements"
echo "auditing $(grep -c . "$requirements") pinned packages of $VENV against $SERVICE"
"$AUDIT_VENV/bin/pip-audit" --requirement "$requirements" --no-deps --strict \
  --vulnerability-service "$SERVICE" --progress-spinner off --desc on
