# say and step, for the scripts of bench/probes that a device call runs (sourced). Set before
# sourcing: LOG (the log file), STEPS_OUT (the folder for each step's output), TOTAL and SCALE
# (no step runs past TOTAL * SCALE seconds from STARTED, $SECONDS at the start); define
# after_step to run something after each step (index_where.sh packs what it has).
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

step() {  # step SECONDS NAME command...: run it, keep its output, go on whatever happens
  local limit=$(($1 * SCALE)) name=$2; shift 2
  local left=$((TOTAL * SCALE - (SECONDS - STARTED)))
  [ $left -lt $limit ] && limit=$left
  if [ $limit -le 10 ]; then say "$name: skipped, no time left"; return; fi
  say "$name (limit ${limit}s): $*"
  # SIGINT first, so that a Python step runs its finally blocks and writes what it has.
  timeout -s INT -k 10 $limit "$@" > "$STEPS_OUT/$name.out" 2>&1
  local rc=$?
  say "$name: rc=$rc, load $(cut -d' ' -f1-3 /proc/loadavg)"
  [ $rc -eq 0 ] || tail -8 "$STEPS_OUT/$name.out" | tee -a "$LOG"
  if declare -F after_step > /dev/null; then after_step; fi
}
