#!/usr/bin/env bash
# Mutation testing of the modules whose bugs the suite must catch (issue 14), with mutmut.
#
#   bench/mutation.sh [MODULE ...]      default: every module below, in this order
#   MODULES: core/ledger.py core/planner.py policies http/security.py rollout monitor/health.py
#
# mutmut (config: [tool.mutmut] in pyproject.toml) copies src/ and tests/ into mutants/
# (ignored by git; delete it to start over) and runs, for each mutant, the fast tests
# of the selection that reach the mutated function. One worker only: the machines this
# runs on are small and shared. Ends with a markdown table: killed/total per module.
# Not part of `make test`: a full run takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
unset PYTHONPATH  # mutmut puts mutants/src first; the original src must not shadow it

declare -A GLOB=(
    [core/ledger.py]="modelpool.core.ledger.*"
    [core/planner.py]="modelpool.core.planner.*"
    [policies]="modelpool.policies.*"
    [http/security.py]="modelpool.http.security.*"
    [rollout]="modelpool.rollout.*"
    [monitor/health.py]="modelpool.monitor.health.*"
)
ORDER=(core/ledger.py core/planner.py policies http/security.py rollout monitor/health.py)
if (($#)); then ORDER=("$@"); fi
for module in "${ORDER[@]}"; do
    [[ -n ${GLOB[$module]:-} ]] || { echo "unknown module $module (known: ${!GLOB[*]})" >&2; exit 2; }
done

for module in "${ORDER[@]}"; do
    echo "== mutmut run ${GLOB[$module]}" >&2
    "$PYTHON" -m mutmut run --max-children 1 "${GLOB[$module]}" >&2
done

args=()
for module in "${ORDER[@]}"; do args+=("$module" "${GLOB[$module]}"); done
"$PYTHON" -m mutmut results --all true | "$PYTHON" bench/mutation_scores.py "${args[@]}"
