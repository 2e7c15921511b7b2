#!/usr/bin/env bash
# The evolve GitHub Action (action.yml): evaluate an experience, gate on its score, propose
# improvements, and report. Everything comes from the environment (action.yml maps its inputs):
#
#   EVOLVE_EXPERIENCE      the experience directory (required)
#   EVOLVE_BASELINE        a git ref to compare against (the pull request's base); empty: none
#   EVOLVE_MIN_SCORE       fail when the suite's mean score is below it; empty: no floor
#   EVOLVE_NO_REGRESSIONS  true: fail when a case that passed at the baseline fails now
#   EVOLVE_PROPOSE         true: run `evolve propose` on the suite (with --verify when supported)
#   EVOLVE_MODE            auto (live when a *_API_KEY variable is set), offline or live
#   EVOLVE_COMMENT         true: on a pull request, post or update one comment (needs GH_TOKEN)
#   GH_TOKEN               the workflow's token, for `gh`; without rights nothing is posted
#   EVOLVE_BIN             the evolve command (default: evolve)
#   GITHUB_STEP_SUMMARY, GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_REPOSITORY, RUNNER_TEMP
#
# Exit codes: 0 every gate held; 1 a gate failed (score floor, regressions) or the evaluation
# failed; 2 bad inputs. The summary and the comment are written whatever the gates say.
set -uo pipefail

evolve="${EVOLVE_BIN:-evolve}"
experience="${EVOLVE_EXPERIENCE:-}"
summary="${GITHUB_STEP_SUMMARY:-/dev/null}"
work="$(mktemp -d "${RUNNER_TEMP:-/tmp}/evolve-action.XXXXXX")"
ws="$work/workspace"
marker="<!-- evolve-action: ${experience} -->"
report="$work/report.md"

note() { echo "evolve-action: $*" >&2; }
json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get(sys.argv[2]) or "")' "$@"; }

if [[ -z "$experience" || ! -d "$experience" ]]; then
  note "the experience directory '${experience}' does not exist (input: experience)"
  exit 2
fi

case "${EVOLVE_MODE:-auto}" in
  offline) live=false ;;
  live) live=true ;;
  auto) live=false
        while IFS='=' read -r name value; do
          if [[ "$name" == *_API_KEY && -n "$value" ]]; then live=true; fi
        done < <(env) ;;
  *) note "mode must be auto, offline or live, not '${EVOLVE_MODE}'"; exit 2 ;;
esac
mode_flags=()
$live || mode_flags=(--offline)
note "evaluating $experience $($live && echo 'live (a model key is set)' || echo 'offline (cassettes)')"

status=0
{
  echo "$marker"
  echo "## evolve: \`$experience\`"
  echo
} > "$report"

# the baseline: the same experience at the baseline ref, in a worktree, into the same workspace
base_id=""
if [[ -n "${EVOLVE_BASELINE:-}" ]]; then
  if git worktree add --quiet --detach "$work/base" "$EVOLVE_BASELINE" >&2; then
    if [[ -d "$work/base/$experience" ]]; then
      "$evolve" eval "$work/base/$experience" "${mode_flags[@]}" --workspace "$ws" --json \
        > "$work/base.json" 2> "$work/base.err" || true
      base_id="$(json_field "$work/base.json" suite_id 2>/dev/null)"
      [[ -n "$base_id" ]] || note "the baseline did not evaluate: $(tail -1 "$work/base.err")"
    else
      note "$experience does not exist at $EVOLVE_BASELINE: no baseline to compare with"
    fi
  else
    note "cannot check out the baseline $EVOLVE_BASELINE (fetch-depth: 0 on actions/checkout?)"
  fi
fi

gate=()
[[ -n "${EVOLVE_MIN_SCORE:-}" ]] && gate=(--min-score "$EVOLVE_MIN_SCORE")
"$evolve" eval "$experience" "${mode_flags[@]}" --workspace "$ws" "${gate[@]}" --json \
  > "$work/head.json" 2> "$work/head.err"
eval_rc=$?
head_id="$(json_field "$work/head.json" suite_id 2>/dev/null)"
if [[ -z "$head_id" ]]; then
  note "evolve eval failed: $(tail -3 "$work/head.err")"
  { echo "**evolve eval failed** (exit $eval_rc):"; echo; echo '```'; tail -20 "$work/head.err"; echo '```'; } >> "$report"
  status=1
else
  python3 - "$work/head.json" "${EVOLVE_MIN_SCORE:-}" >> "$report" <<'PY'
import json, sys
suite = json.load(open(sys.argv[1]))
floor = sys.argv[2]
score = suite.get("score")
shown = "—" if score is None else f"{score:.2f}"
rate = suite.get("pass_rate")
line = f"**score {shown}** · pass rate {'—' if rate is None else f'{rate:.0%}'}"
if floor:
    held = score is not None and score >= float(floor)
    line += f" · min-score {floor}: {'✅ held' if held else '❌ not met'}"
print(line)
print()
print("| case | score | passed |")
print("|---|---|---|")
for case in suite.get("cases", []):
    value = case.get("score")
    print(f"| {case.get('case_id')} | {'—' if value is None else f'{value:.2f}'} "
          f"| {'✅' if case.get('passed') else '❌'} |")
print()
PY
  if (( eval_rc != 0 )); then
    note "the score gate failed (evolve eval exit $eval_rc)"
    status=1
  fi
fi

if [[ -n "$base_id" && -n "$head_id" ]]; then
  regress=()
  [[ "${EVOLVE_NO_REGRESSIONS:-true}" == true ]] && regress=(--no-regressions)
  "$evolve" compare "$base_id" "$head_id" "${regress[@]}" --markdown --workspace "$ws" \
    > "$work/compare.md" 2> "$work/compare.err"
  compare_rc=$?
  cat "$work/compare.md" >> "$report"
  echo >> "$report"
  if (( compare_rc != 0 )); then
    note "the comparison with $EVOLVE_BASELINE failed its gate (evolve compare exit $compare_rc)"
    status=1
  fi
fi

if [[ "${EVOLVE_PROPOSE:-true}" == true && -n "$head_id" ]]; then
  verify=()
  if "$evolve" propose --help 2>/dev/null | grep -q -- '--verify'; then
    verify=(--verify)
  else
    note "this evolve has no propose --verify: proposals are checked to apply, not re-evaluated"
  fi
  llm=()
  $live || llm=(--offline)
  if "$evolve" propose "$head_id" "${llm[@]}" "${verify[@]}" --workspace "$ws" --json \
      > "$work/propose.json" 2> "$work/propose.err"; then
    proposals="$(json_field "$work/propose.json" path)"
    { echo "### Proposals"; echo; sed '1{/^# /d}' "$proposals"; echo; } >> "$report"
  else
    note "evolve propose failed: $(tail -1 "$work/propose.err")"
    { echo "### Proposals"; echo; echo "evolve propose failed: $(tail -1 "$work/propose.err")"; } >> "$report"
  fi
fi

cat "$report" >> "$summary"

if [[ "${EVOLVE_COMMENT:-true}" == true && "${GITHUB_EVENT_NAME:-}" == pull_request* ]]; then
  number="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pull_request"]["number"])' "${GITHUB_EVENT_PATH:-/dev/null}" 2>/dev/null)"
  if [[ -z "${GH_TOKEN:-}" || -z "$number" ]]; then
    note "no token or pull request number: no comment posted"
  else
    repo="${GITHUB_REPOSITORY}"
    existing="$(gh api "repos/$repo/issues/$number/comments" --paginate \
      --jq ".[] | select(.body | startswith(\"$marker\")) | .id" 2>/dev/null | head -1)"
    if [[ -n "$existing" ]]; then
      gh api -X PATCH "repos/$repo/issues/comments/$existing" -F "body=@$report" > /dev/null \
        && note "updated comment $existing on #$number" \
        || note "could not update the comment (does the token have pull-requests: write?)"
    else
      gh api "repos/$repo/issues/$number/comments" -F "body=@$report" > /dev/null \
        && note "commented on #$number" \
        || note "could not comment (does the token have pull-requests: write?): nothing posted"
    fi
  fi
fi

git worktree remove --force "$work/base" >/dev/null 2>&1 || true
exit "$status"
