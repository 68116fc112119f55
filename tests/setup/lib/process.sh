# Shared by the set-up scripts in tests/setup/ (sourced, never run: tests/run
# runs only tests/setup/*.sh).

# Is $1 the pid of a live process (not a zombie waiting to be reaped) whose
# command name is $2? A pid file can outlive its daemon and the pid be
# reused, so the name is checked too.
alive_as() {
  local pid=$1 name=$2 stat
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] && [ "${stat%% *}" != X ]
}
