#!/usr/bin/env bash
# The Helm chart's suite: tests/helm/check.py with the pinned tools (mk/helm.mk
# passes HELM, KUBE_VALIDATE, PYTHON and HEARTH_BIN). Helm's own folders go to a
# temporary directory so the suite reads nothing from the user's Helm set-up.
set -euo pipefail
: "${HELM:?}" "${KUBE_VALIDATE:?}" "${YAMLLINT:?}" "${PYTHON:?}" "${HEARTH_BIN:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export HELM_CACHE_HOME=$tmp/cache HELM_CONFIG_HOME=$tmp/config HELM_DATA_HOME=$tmp/data
export HELM KUBE_VALIDATE YAMLLINT HEARTH_BIN
start=$(date +%s)
"$HELM" version --short
"$KUBE_VALIDATE" --version
"$YAMLLINT" --version
"$PYTHON" "$(dirname "$0")/check.py"
echo "helm chart suite: $(( $(date +%s) - start )) s"
