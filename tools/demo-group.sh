# The demo with several daemons in one consumer group, sourced by tools/demo.sh --instances N
# (which has started the broker and written the registry, the keys and clearingd.toml): each
# member consumes its share and hands its partitions' state over through the changelog topics;
# member 2 is killed (SIGKILL) while the day is produced and started again; the day is closed
# through the last member, the owner of yrd.taps partition 0 writes the one file set; then the
# other members stop, the first takes every partition (restoring them from the changelogs), and
# its store is checked against the oracle and the files against it.

admin_token=demo-admin-token-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
(umask 077 && printf '%s\n' "$admin_token" >"$out/admin.token")

# member_config <i>: the configuration of member i, from clearingd.toml.
member_config() {
  sed -e "s|^path = \"state\"|path = \"state-$1\"|" -e "s|^dir = \"files\"|dir = \"files-$1\"|" \
    -e "s|^bootstrap_servers = .*|&\nassignment = \"group\"\ngroup_instance_id = \"clearing-$1\"|" \
    -e "s|^port = 0|port = 0\nclose_token_file = \"admin.token\"|" \
    "$out/clearingd.toml" >"$out/clearingd-$1.toml"
  # A member that stops for good is noticed within seconds, not librdkafka's default 45.
  printf '[kafka.settings]\n"session.timeout.ms" = "6000"\n"heartbeat.interval.ms" = "500"\n' \
    >>"$out/clearingd-$1.toml"
}

declare -A member_pid
start_member() {
  "$bin/clearingd/clearingd" --config "$out/clearingd-$1.toml" >>"$out/clearingd-$1.log" 2>&1 &
  member_pid[$1]=$!
  pids+=("$!")
}

# admin_port <i>: the admin port member i logged last (empty until it did).
admin_port() {
  grep '"event":"admin_endpoint"' "$out/clearingd-$1.log" 2>/dev/null | tail -n1 | sed -n 's/.*"port":\([0-9]*\).*/\1/p'
}

# http <i> <method> <path> [token]: the response body of one request to member i's admin endpoint.
http() {
  local port auth=""
  port=$(admin_port "$1")
  [[ -n $port ]] || return 1
  [[ -n ${4:-} ]] && auth="Authorization: Bearer $4"$'\r\n'
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%sContent-Length: 0\r\n\r\n' "$2" "$3" "$auth" >&3
    sed '1,/^\r$/d' <&3
  ) 2>/dev/null
}

# metric_sum <i> <name>: the sum of a metric's samples on member i, "unknown" if a sample is < 0.
metric_sum() {
  local page
  page=$(http "$1" GET /metrics) || return 1
  [[ -n $page ]] || return 1
  awk -v name="$2" '
    { split($1, parts, "{") }
    parts[1] == name { if ($2 < 0) bad = 1; sum += $2 }
    END { if (bad) print "unknown"; else print sum + 0 }' <<<"$page"
}

# wait_for <seconds> <what> <command...>: runs the command every 0.5 s until it succeeds.
wait_for() {
  local limit=$1 what=$2 started
  shift 2
  started=$(date +%s)
  until "$@"; do
    if (( $(date +%s) - started > limit )); then
      echo "timed out after ${limit}s waiting for $what; see $out/clearingd-*.log" >&2
      exit 1
    fi
    sleep 0.5
  done
}

restored_since() {  # restored_since <i> <byte offset of its log>
  tail -c +"$(( $2 + 1 ))" "$out/clearingd-$1.log" 2>/dev/null | grep -q '"event":"partition_restored"'
}
consumed_since() {  # consumed_since <i> <byte offset of its log>
  tail -c +"$(( $2 + 1 ))" "$out/clearingd-$1.log" 2>/dev/null | grep -q '"consumed":[1-9]'
}
log_size() { stat -c %s "$out/clearingd-$1.log" 2>/dev/null || echo 0; }

echo "== starting $instances clearingd instances in one consumer group"
for i in $(seq 1 "$instances"); do
  member_config "$i"
  : >"$out/clearingd-$i.log"
  start_member "$i"
done
all_restored() {
  local i
  for i in $(seq 1 "$instances"); do restored_since "$i" 0 || return 1; done
}
wait_for 180 "every member to restore its first partitions" all_restored

echo "== producing $events events of $date_cst while the members consume them"
"$bin/clearing-gen/clearing-gen" day --registry "$out/registry.toml" --date "$date_cst" --events "$events" \
  --seed 2 --brokers "$bootstrap" --oracle "$out/oracle.json" &
generator=$!
pids+=("$generator")
wait_for 300 "member 2 to consume" consumed_since 2 0
echo "== killing member 2 (SIGKILL) in the middle of the day, and starting it again"
kill -KILL "${member_pid[2]}"
wait "${member_pid[2]}" 2>/dev/null || true
killed_at_ms=$(( $(date +%s%N) / 1000000 ))
life_start=$(log_size 2)
start_member 2
wait_for 300 "member 2 to get its partitions back" restored_since 2 "$life_start"
echo "   member 2 had its partitions' state back $(( $(date +%s%N) / 1000000 - killed_at_ms )) ms after the kill"
wait "$generator"
messages=$(sed -n 's/.*"messages": *\([0-9]*\).*/\1/p' "$out/oracle.json" | head -n1)

echo "== waiting until the members together have consumed all $messages messages"
caught_up() {
  local i owned=0 lag value
  for i in $(seq 1 "$instances"); do
    value=$(metric_sum "$i" yrd_owned_partitions) || return 1
    [[ $value =~ ^[0-9]+$ ]] || return 1
    owned=$((owned + value))
    lag=$(metric_sum "$i" yrd_consumer_lag_messages) || return 1
    [[ $lag == 0 ]] || return 1
  done
  ((owned == 2 * partitions))
}
wait_for "$catch_up_seconds_max" "the group to consume the day" caught_up

echo "== closing $date_cst through member $instances only: every member closes its partitions,"
echo "   and the owner of yrd.taps partition 0 merges the window from every changelog"
http "$instances" POST "/v1/windows/$date_cst/close" "$admin_token" | grep -q '"window"' ||
  { echo "the close was refused; see $out/clearingd-$instances.log" >&2; exit 1; }
all_written() {
  local i
  for i in $(seq 1 "$instances"); do http "$i" GET "/v1/windows/$date_cst" | grep -q files_written || return 1; done
}
wait_for 600 "the file set to be written and every member to know it" all_written
writer=""
for i in $(seq 1 "$instances"); do [[ -f $out/files-$i/$date_cst/MANIFEST ]] && writer="$writer $i"; done
writer=${writer# }
[[ $writer =~ ^[0-9]$ ]] || { echo "expected one member to write the file set, got: '${writer}'" >&2; exit 1; }
echo "   member $writer wrote the one file set"

echo "== back to one: the other members stop; member 1 restores every partition from the changelogs"
for i in $(seq 2 "$instances"); do kill -TERM "${member_pid[$i]}"; wait "${member_pid[$i]}"; done
holds_all() {
  local owned
  owned=$(metric_sum 1 yrd_owned_partitions) || return 1
  [[ $owned == $((2 * partitions)) ]] && [[ $(metric_sum 1 yrd_changelog_restoring_partitions) == 0 ]]
}
wait_for 300 "member 1 to hold every partition" holds_all
committed_all() {
  local committed
  committed=$("$bin/clearing-report/clearing-report" --store "$out/state-1" --format json progress 2>/dev/null |
    sed -n 's/.*"messages":\([0-9]*\).*/\1/p')
  [[ ${committed:-0} -eq $messages ]]
}
wait_for 300 "member 1's store to hold every message" committed_all
kill -TERM "${member_pid[1]}"
wait "${member_pid[1]}"

echo "== checking every position and count of member 1's store against the generator's oracle"
"$bin/clearing-report/clearing-report" --store "$out/state-1" outcome --registry "$out/registry.toml" \
  --expect "$out/oracle.json"
files="$out/files-$writer/$date_cst"
echo "== verifying the files against their MANIFEST, their trailers and member 1's store"
"$bin/clearing-report/clearing-report" --store "$out/state-1" verify "$files" --registry "$out/registry.toml" \
  --key-file "$out/manifest.key"

echo "== province positions of $date_cst from $files/summary.txt (fen)"
grep 'PROVINCE' "$files/summary.txt"
echo
echo "Clearing files: $files"
echo "Everything of this run: $out (state stores, logs, registry, oracle, files)."
