#!/usr/bin/env bash
# The main job (make demo): the whole system on one machine.
#   1. a fresh Debian host (a systemd + sshd container) is enrolled as a worker
#      with `bettertest enroll`, over SSH, as a user would enroll a real machine;
#   2. a boss starts with the example pipelines;
#   3. a first run of the example pipeline is started and followed to its end;
#   4. the address of the UI is printed. On a terminal the demo then keeps
#      everything running until Ctrl-C; otherwise it cleans up and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

dir=$(mktemp -d /tmp/bettertest-demo.XXXXXX)
host=bettertest-demo-$(basename "$dir" | cut -d. -f2 | tr '[:upper:]' '[:lower:]')
boss_pid=
cleanup() {
	if [ -n "$boss_pid" ] && kill -TERM "$boss_pid" 2>/dev/null; then wait "$boss_pid" || true; fi
	# SIGRTMIN+3 (the image's stop signal) powers systemd off cleanly.
	docker stop -t 30 "$host" >/dev/null 2>&1 || true
	docker rm -f -v "$host" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

step "1. a fresh Debian 12 host ($host): systemd and sshd in a container"
# systemd in the container sends READY=1 to NOTIFY_SOCKET once it has booted:
# the demo waits for that datagram, as a container manager would.
mkdir -m 700 "$dir/notify"
python3 - "$dir/notify/sock" docker run -d --name "$host" --hostname "$host" \
	--cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add MKNOD --cap-add SYS_PTRACE \
	--security-opt seccomp=unconfined --security-opt apparmor=unconfined --cgroupns host \
	-v /sys/fs/cgroup:/sys/fs/cgroup --tmpfs /run --tmpfs /run/lock -v "$dir/notify:/run/host/notify" \
	--mount type=volume,target=/var/lib/docker \
	-p 127.0.0.1::22 -p 127.0.0.1::9009 bettertest/testhost:bookworm \
	/usr/bin/env NOTIFY_SOCKET=/run/host/notify/sock /sbin/init <<'PY'
import select, socket, subprocess, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
subprocess.run(sys.argv[2:], check=True, stdout=subprocess.DEVNULL)
while True:
    if not select.select([sock], [], [], 120)[0]:
        sys.exit("demo: the host did not finish booting within 120 s; see docker logs")
    if b"READY=1" in sock.recv(4096).split(b"\n"):
        break
PY
docker exec "$host" systemctl start ssh # returns once sshd listens
ssh_port=$(docker port "$host" 22/tcp | head -n1 | sed 's/.*://')
worker_port=$(docker port "$host" 9009/tcp | head -n1 | sed 's/.*://')

# The demo's own HOME: its key, known_hosts and workers directory, nothing of yours.
export HOME=$dir/home
mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"
docker exec -i "$host" sh -c 'umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys' <"$HOME/.ssh/id_ed25519.pub"
# Trust exactly the host's key, read from the host itself.
printf '[127.0.0.1]:%s %s\n' "$ssh_port" "$(docker exec "$host" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)" >"$HOME/.ssh/known_hosts"
echo "reachable as root@127.0.0.1 port $ssh_port; its worker will listen on 127.0.0.1:$worker_port"

step "2. bettertest enroll root@127.0.0.1 (installs Docker, python3, the worker and its unit)"
bin/bettertest enroll --port "$ssh_port" --name demo-host --url "http://127.0.0.1:$worker_port" root@127.0.0.1 ||
	die "enrollment failed with status $?"
# No registry is reachable here: the images the pipelines use come from this machine.
echo "loading the example images into the worker's Docker engine"
docker save bettertest/base:bookworm bettertest/cc:bookworm | docker exec -i "$host" docker load -q >/dev/null

step "3. bettertest boss with the example pipelines"
mkfifo "$dir/boss.log"
bin/bettertest boss --listen 127.0.0.1:0 --data-dir "$dir/boss" \
	--pipedef python/examples/pipeline.py --pipedef python/examples/broken.py --pipedef python/examples/flaky.py 2>"$dir/boss.log" &
boss_pid=$!
exec {log}<"$dir/boss.log"
boss_url=
while IFS= read -r line <&"$log"; do
	printf '%s\n' "$line" >>"$dir/boss.txt"
	case $line in *"msg=listening "*)
		boss_url=http://$(sed -n 's/.* addr=\([^ ]*\).*/\1/p' <<<"$line")
		break
		;;
	esac
done
[ -n "$boss_url" ] || die "the boss did not start: $(cat "$dir/boss.txt")"
cat <&"$log" >>"$dir/boss.txt" &
echo "boss listening at $boss_url"

step "4. bettertest run pipeline: the first run, followed to its end"
bin/bettertest run --boss "$boss_url" pipeline || die "the run failed with status $?"
printf '\n%sthe example pipeline passed on the enrolled worker%s\n' "$GREEN" "$RESET"

step "5. bettertest run flaky: a test case fails, then passes when retried"
bin/bettertest run --boss "$boss_url" flaky || die "the run failed with status $?"
printf '\n%sthe flaky run passed on its retry; the boss lists pkg.TestCache at %s/flaky%s\n' "$GREEN" "$boss_url" "$RESET"

printf '\nThe UI: %s%s%s   (press ? there for the keys; the API is under %s/api)\n' "$BOLD" "$boss_url" "$RESET" "$boss_url"
echo "Start runs with: bin/bettertest run --boss $boss_url pipeline   (or broken, which fails on purpose; or flaky)"
if [ -t 0 ] && [ -t 1 ]; then
	echo "Everything keeps running until you press Ctrl-C."
	trap 'echo; exit 0' INT
	wait "$boss_pid"
fi
