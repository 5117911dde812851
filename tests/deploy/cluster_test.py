#!/usr/bin/env python3
"""Deploy test, cluster part (run by tests/deploy/run, which builds the image first).

Against the image IMAGE and deploy/docker-compose.yml, with a compose project of its own:
  1. `docker run IMAGE` serves as a single node; `docker run IMAGE kvctl ...` runs the CLI.
  2. The 3-node compose cluster comes up healthy (every node knows a leader).
  3. Writes and reads from the host through every protocol and every node: text over a
     socket, RESP with redis-cli, etcd with etcdctl, and kvctl from a container.
  4. With a writer running through all three nodes the whole time:
     - `docker kill` the leader; time from the kill to the first acknowledged write through
       a surviving node; restart it; it catches up.
     - `docker pause` the (new) leader past the election timeout; the others elect a leader
       and serve writes; unpause; it catches up.
     - `docker network disconnect` a follower; the others serve writes; it notices it has no
       leader; reconnect it; it catches up and is reachable from the host again.
  5. Every acknowledged write is on all three nodes (read through each node).
  6. `down` keeps the data volumes: after `up` again every acknowledged write is there.
  7. `down -v`; no container, network or volume of the project is left.
Exit 0 on success, 1 on failure. Every wait has a deadline; the whole run has one too.
Only the Python standard library is used.
"""
import argparse
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COMPOSE_FILE = os.path.join(ROOT, "deploy", "docker-compose.yml")
NODES = 3
# kvd defaults: --tick-ms=100, --election-ticks=10, randomized in [N, 2N): at most 2 s.
ELECTION_TIMEOUT_MAX_S = 2.0
# docker kill of the leader -> first acknowledged write: fail beyond this, warn beyond
# FAILOVER_WARN_S. The peer transport once opened a peer's stream under the lock the raft
# loop sends through, so a killed container (whose address then black-holes connects) froze
# the new leader for gRPC's 20 s connect timeout; tests/server/peer_transport_test.cc guards
# that now, and this bound catches any stall of that size again.
MAX_FAILOVER_S = float(os.environ.get("RAFTKV_DEPLOY_MAX_FAILOVER_S", "10"))
FAILOVER_WARN_S = 5.0
T0 = time.monotonic()


class TestFailure(Exception):
    pass


def log(msg):
    print(f"[deploy {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def run(cmd, timeout=60, check=True, env=None):
    """Runs cmd (a list); returns the CompletedProcess (text). Raises TestFailure on a
    non-zero exit when check, and always on timeout."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"timed out after {timeout}s: {' '.join(cmd)}")
    if check and p.returncode != 0:
        raise TestFailure(f"exit {p.returncode}: {' '.join(cmd)}\n{p.stdout}{p.stderr}")
    return p


def wait_for(what, cond, timeout, interval=0.2):
    """Polls cond() until it returns something truthy (returned); raises TestFailure at the
    deadline. cond may raise; the last error is reported."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last = None
        except (TestFailure, OSError, ValueError, KeyError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise TestFailure(f"timed out after {timeout:.0f}s waiting for {what}"
                              + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ---- clients ------------------------------------------------------------------------------

def text_request(port, line, nlines=1, timeout=3.0):
    """Sends one text-protocol line to 127.0.0.1:port; returns the reply's lines."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(line.encode() + b"\n")
        buf = b""
        while buf.count(b"\n") < nlines:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError(f"connection closed after {buf!r}")
            buf += chunk
    return buf.decode().split("\n")[:nlines]


def text_one(port, line, timeout=3.0):
    return text_request(port, line, 1, timeout)[0].rstrip("\r")


class Cluster:
    def __init__(self, compose_cmd, project, image):
        self.compose_cmd = compose_cmd
        self.project = project
        self.image = image
        ports = free_ports(2 * NODES)
        self.client_port = ports[:NODES]
        self.grpc_port = ports[NODES:]
        self.env = dict(os.environ, RAFTKV_IMAGE=image)
        for i in range(NODES):
            self.env[f"RAFTKV_NODE{i}_CLIENT_PORT"] = str(self.client_port[i])
            self.env[f"RAFTKV_NODE{i}_GRPC_PORT"] = str(self.grpc_port[i])
        self.cid = [None] * NODES
        self.network = None
        self.acked = {}  # key -> value of every write acknowledged to this thread

    def compose(self, *args, timeout=120, check=True):
        return run(self.compose_cmd + ["-p", self.project, "-f", COMPOSE_FILE] + list(args),
                   timeout=timeout, check=check, env=self.env)

    def up(self):
        self.compose("up", "-d", "--no-build", timeout=180)
        for i in range(NODES):
            self.cid[i] = self.compose("ps", "-q", f"node{i}").stdout.strip()
            if not self.cid[i]:
                raise TestFailure(f"no container for node{i}")
        nets = json.loads(run(["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                               self.cid[0]]).stdout)
        self.network = next(iter(nets))

    def down(self):
        self.compose("down", "-v", "--remove-orphans", "-t", "10", timeout=180, check=False)

    # Node status over the etcd Maintenance.Status API, with etcdctl from the host.
    def status(self, i, timeout=2):
        p = run(["etcdctl", f"--endpoints=127.0.0.1:{self.grpc_port[i]}", "--dial-timeout=1s",
                 f"--command-timeout={timeout}s", "endpoint", "status", "-w", "json"],
                timeout=timeout + 5, check=False, env=dict(os.environ, ETCDCTL_API="3"))
        if p.returncode != 0:
            raise TestFailure(f"node{i} status: {p.stderr.strip()}")
        st = json.loads(p.stdout)[0]["Status"]
        member = st["header"]["member_id"]
        leader = st.get("leader", 0)
        return {
            "id": member - 1,
            "leader": leader - 1 if leader else None,
            "term": st.get("raftTerm", 0),
            "index": st.get("raftIndex", 0),
            "applied": st.get("raftAppliedIndex", 0),
            "revision": st["header"].get("revision", 0),
        }

    def statuses(self, nodes=range(NODES)):
        out = {}
        for i in nodes:
            try:
                out[i] = self.status(i)
            except TestFailure:
                pass
        return out

    def leader(self, among=range(NODES)):
        """The node that says it is the leader (highest term if several), or None."""
        best = None
        for i, s in self.statuses(among).items():
            if s["leader"] == i and (best is None or s["term"] > best[1]["term"]):
                best = (i, s)
        return best

    def health(self, i):
        return run(["docker", "inspect", "-f", "{{.State.Status}} {{if .State.Health}}"
                    "{{.State.Health.Status}}{{end}}", self.cid[i]]).stdout.split()

    def wait_healthy(self, nodes, timeout=60):
        def ok():
            return all(self.health(i) == ["running", "healthy"] for i in nodes)
        wait_for(f"node(s) {list(nodes)} healthy", ok, timeout, interval=0.5)

    def put_marker(self, via, key):
        """A write through node `via` (text protocol); returns the leader's index after it."""
        value = f"marker-{random.randrange(1 << 30)}"
        reply = text_one(self.client_port[via], f"SET {key} {value}")
        if reply != "OK":
            raise TestFailure(f"SET {key} through node{via}: {reply}")
        self.acked[key] = value
        return key, value

    def wait_caught_up(self, node, others, timeout=60):
        """node has applied everything the others had committed when this was called, and
        serves a read of a fresh write."""
        t = time.monotonic()

        def target():
            st = self.statuses(others)
            return max((s["index"] for s in st.values()), default=0)

        goal = wait_for("a status from a running node", target, 10)
        key, value = wait_for(f"a write through node{others[0]}",
                              lambda: self.put_marker(others[0], f"marker-{node}-{int(t)}"), 20)

        def done():
            s = self.status(node)
            return s["applied"] >= goal and \
                text_one(self.client_port[node], f"GET {key}") == value
        wait_for(f"node{node} to catch up (applied >= {goal})", done, timeout, interval=0.3)
        return time.monotonic() - t


class Writer(threading.Thread):
    """Writes unique keys round-robin through every node's text port; records which were
    acknowledged (OK) so the end can check every one of them survived everywhere."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stop = threading.Event()
        self.acked = {}
        self.lock = threading.Lock()
        self.errors = collections.Counter()  # ERR replies by reason
        self.unknown = 0

    def run(self):
        n = 0
        while not self.stop.is_set():
            node = n % NODES
            key, value = f"bg-{n}", f"value {n} {random.randrange(1 << 30)}"
            try:
                reply = text_one(self.cluster.client_port[node], f"SET {key} {value}",
                                 timeout=3.0)
                if reply == "OK":
                    with self.lock:
                        self.acked[key] = value
                else:
                    self.errors[reply] += 1
            except OSError:
                self.unknown += 1  # refused, reset or timed out: outcome unknown or none
            n += 1
            self.stop.wait(0.02)  # pace: about 50 writes/s at most

    def snapshot(self):
        with self.lock:
            return dict(self.acked)


def first_write_through(cluster, nodes, key_prefix, timeout):
    """Tries writes through `nodes` in turn until one is acknowledged; returns
    (node, key, value, attempts)."""
    attempts = [0]

    def attempt():
        i = nodes[attempts[0] % len(nodes)]
        attempts[0] += 1
        key, value = f"{key_prefix}-{attempts[0]}", f"v{attempts[0]}"
        try:
            if text_one(cluster.client_port[i], f"SET {key} {value}", timeout=1.0) == "OK":
                cluster.acked[key] = value
                return (i, key, value, attempts[0])
        except OSError:
            pass
        return None
    return wait_for(f"a write through node(s) {nodes}", attempt, timeout, interval=0.05)


# ---- the scenario -------------------------------------------------------------------------

def check_single_node(image, project):
    """`docker run IMAGE` starts one node; `docker run IMAGE kvctl` runs the CLI."""
    log("single node: docker run IMAGE")
    port, gport = free_ports(2)
    label = f"raftkv.deploy-test={project}"
    cid = run(["docker", "run", "-d", "--label", label, "--name", f"{project}-single",
               "-p", f"127.0.0.1:{port}:5000", "-p", f"127.0.0.1:{gport}:6000", image]).stdout.strip()
    try:
        wait_for("the single node healthy", lambda: run(
            ["docker", "inspect", "-f", "{{.State.Health.Status}}", cid]).stdout.strip() == "healthy",
            60, interval=0.5)
        if text_one(port, "SET single hello single node") != "OK" or \
                text_one(port, "GET single") != "hello single node":
            raise TestFailure("single node: SET/GET over the text protocol failed")
        out = run(["docker", "run", "--rm", "--label", label, "--network", f"container:{cid}",
                   image, "kvctl", "get", "single"]).stdout.strip()
        if out != "hello single node":
            raise TestFailure(f"single node: kvctl get printed {out!r}")
        user = run(["docker", "exec", cid, "id", "-un"]).stdout.strip()
        if user != "raftkv":
            raise TestFailure(f"the node runs as {user!r}, not raftkv")
        log(f"single node: healthy, text SET/GET and kvctl get work, runs as user {user}")
        t = time.monotonic()
        run(["docker", "stop", "-t", "30", cid], timeout=60)
        code = run(["docker", "inspect", "-f", "{{.State.ExitCode}}", cid]).stdout.strip()
        log(f"single node: docker stop took {time.monotonic() - t:.1f}s, exit code {code}")
        if code != "0":
            raise TestFailure(f"kvd exited with {code} on SIGTERM (expected 0)")
    finally:
        run(["docker", "rm", "-f", "-v", cid], check=False)


def check_protocols(c):
    acked = c.acked
    log("protocols: text, RESP (redis-cli), etcd (etcdctl), kvctl (container), every node")
    for i in range(NODES):
        j = (i + 1) % NODES
        # text protocol over a socket: write through node i, read through node j
        key, value = f"text-{i}", f"hello world {i}"
        if text_one(c.client_port[i], f"SET {key} {value}") != "OK":
            raise TestFailure(f"text SET through node{i}")
        acked[key] = value
        got = text_one(c.client_port[j], f"GET {key}")
        if got != value:
            raise TestFailure(f"text GET {key} through node{j}: {got!r}")
        if text_one(c.client_port[i], "PING") != "PONG":
            raise TestFailure(f"text PING node{i}")
        if text_one(c.client_port[j], f"GET no-such-key-{i}") != "KEY NOT FOUND":
            raise TestFailure("text GET of a missing key")
        # RESP with redis-cli
        key, value = f"resp-{i}", f"resp value {i}"
        out = run(["redis-cli", "-h", "127.0.0.1", "-p", str(c.client_port[i]), "SET", key,
                   value]).stdout.strip()
        if out != "OK":
            raise TestFailure(f"redis-cli SET through node{i}: {out!r}")
        acked[key] = value
        out = run(["redis-cli", "-h", "127.0.0.1", "-p", str(c.client_port[j]), "GET",
                   key]).stdout.strip()
        if out != value:
            raise TestFailure(f"redis-cli GET through node{j}: {out!r}")
        # etcd v3 with etcdctl
        env = dict(os.environ, ETCDCTL_API="3")
        key, value = f"etcd-{i}", f"etcd value {i}"
        out = run(["etcdctl", f"--endpoints=127.0.0.1:{c.grpc_port[i]}", "put", key, value],
                  env=env).stdout.strip()
        if out != "OK":
            raise TestFailure(f"etcdctl put through node{i}: {out!r}")
        acked[key] = value
        out = run(["etcdctl", f"--endpoints=127.0.0.1:{c.grpc_port[j]}", "get", key,
                   "--print-value-only"], env=env).stdout.strip()
        if out != value:
            raise TestFailure(f"etcdctl get through node{j}: {out!r}")
        # across protocols: what etcdctl wrote, the text protocol reads
        if text_one(c.client_port[(i + 2) % NODES], f"GET {key}") != value:
            raise TestFailure("text GET of an etcdctl write")
    # kvctl, from a container on the cluster's network, by service name
    endpoints = ",".join(f"node{i}:6000" for i in range(NODES))
    kvctl = ["docker", "run", "--rm", "--label", f"raftkv.deploy-test={c.project}",
             "--network", c.network, c.image, "kvctl", "--endpoints", endpoints]
    if run(kvctl + ["put", "kvctl-key", "kvctl value"]).stdout.strip() != "OK":
        raise TestFailure("kvctl put")
    acked["kvctl-key"] = "kvctl value"
    if text_one(c.client_port[0], "GET kvctl-key") != "kvctl value":
        raise TestFailure("text GET of a kvctl write")
    status = run(kvctl + ["status"]).stdout
    log("kvctl status (from a container on the network):\n" + status.rstrip())


def check_kill_leader(c, writer, report):
    leader, st = wait_for("a leader", c.leader, 20)
    others = [i for i in range(NODES) if i != leader]
    log(f"kill: node{leader} is the leader (term {st['term']}); docker kill")
    t0 = time.monotonic()
    run(["docker", "kill", c.cid[leader]])
    node, key, value, attempts = first_write_through(c, others, "failover", MAX_FAILOVER_S)
    failover = time.monotonic() - t0
    report["failover_s"] = failover
    log(f"kill: first acknowledged write {failover:.2f}s after docker kill "
        f"(through node{node}, attempt {attempts})")
    if failover > FAILOVER_WARN_S:
        log(f"kill: WARNING: failover took {failover:.1f}s, expected about one election "
            f"timeout (<= {ELECTION_TIMEOUT_MAX_S:.0f}s); see MAX_FAILOVER_S in {__file__}")
    new_leader, st2 = wait_for("a new leader", lambda: c.leader(others), 20)
    log(f"kill: node{new_leader} leads (term {st2['term']})")
    state = c.health(leader)[0]
    log(f"kill: node{leader}'s container is {state} after docker kill "
        f"(restart: unless-stopped does not restart a killed container)" if state != "running"
        else f"kill: node{leader}'s container was restarted by its restart policy")
    if state != "running":
        run(["docker", "start", c.cid[leader]])
    took = c.wait_caught_up(leader, others)
    report["catch_up_after_restart_s"] = took
    c.wait_healthy([leader])
    log(f"kill: node{leader} restarted and caught up in {took:.1f}s, healthy")


def check_pause(c, report):
    leader, st = wait_for("a leader", c.leader, 20)
    others = [i for i in range(NODES) if i != leader]
    log(f"pause: node{leader} is the leader (term {st['term']}); docker pause")
    t0 = time.monotonic()
    run(["docker", "pause", c.cid[leader]])
    try:
        new_leader, st2 = wait_for("a leader among the others",
                                   lambda: c.leader(others), 30)
        log(f"pause: node{new_leader} elected (term {st2['term']}) "
            f"{time.monotonic() - t0:.1f}s after the pause")
        node, *_ = first_write_through(c, others, "paused", 20)
        # The fault lasts well past the election timeout (this is its duration, not a wait
        # for anything).
        rest = 3 * ELECTION_TIMEOUT_MAX_S - (time.monotonic() - t0)
        if rest > 0:
            time.sleep(rest)
    finally:
        run(["docker", "unpause", c.cid[leader]], check=False)
    paused = time.monotonic() - t0
    took = c.wait_caught_up(leader, others)
    report["pause_s"] = paused
    s = c.status(leader)
    log(f"pause: unpaused after {paused:.1f}s; node{leader} caught up in {took:.1f}s "
        f"(now {'leader' if s['leader'] == leader else 'follower'} in term {s['term']})")
    c.wait_healthy(range(NODES))


def check_disconnect(c, report):
    leader, st = wait_for("a leader", c.leader, 20)
    follower = [i for i in range(NODES) if i != leader][0]
    others = [i for i in range(NODES) if i != follower]
    log(f"disconnect: node{leader} leads (term {st['term']}); docker network disconnect "
        f"node{follower}")
    t0 = time.monotonic()
    run(["docker", "network", "disconnect", c.network, c.cid[follower]])
    try:
        first_write_through(c, others, "cut", 20)

        def isolated_knows_no_leader():
            p = run(["docker", "exec", c.cid[follower], "kvctl", "--output", "json",
                     "--timeout-ms", "2000", "status"], check=False)
            return p.returncode == 0 and '"leader":null' in p.stdout
        wait_for(f"node{follower} to notice it has no leader", isolated_knows_no_leader, 30,
                 interval=0.3)
        log(f"disconnect: node{follower} knows no leader "
            f"{time.monotonic() - t0:.1f}s after the cut; the others serve writes")
        rest = 3 * ELECTION_TIMEOUT_MAX_S - (time.monotonic() - t0)
        if rest > 0:
            time.sleep(rest)
    finally:
        # Compose gave the container its service name as a network alias; reconnect with it.
        run(["docker", "network", "connect", "--alias", f"node{follower}", c.network,
             c.cid[follower]], check=False)
    cut = time.monotonic() - t0
    took = c.wait_caught_up(follower, others)
    report["disconnect_s"] = cut
    after = c.leader()
    log(f"disconnect: reconnected after {cut:.1f}s; node{follower} caught up in {took:.1f}s; "
        f"leader node{after[0]} term {after[1]['term']} (was node{leader} term {st['term']})")
    c.wait_healthy(range(NODES))


def check_all_writes(c, acked):
    log(f"final: every acknowledged write ({len(acked)}) on every node")

    def converged():
        st = c.statuses()
        if len(st) != NODES:
            return False
        applied = {s["applied"] for s in st.values()}
        return len(applied) == 1 and st[0]["applied"] >= max(s["index"] for s in st.values())
    wait_for("all nodes at the same applied index", converged, 60, interval=0.3)
    keys = sorted(acked)
    for i in range(NODES):
        missing = []
        for k in range(0, len(keys), 200):
            chunk = keys[k:k + 200]
            got = text_request(c.client_port[i], "MGET " + " ".join(chunk), len(chunk),
                               timeout=10)
            for key, value in zip(chunk, got):
                if value.rstrip("\r") != acked[key]:
                    missing.append(f"{key}={value!r} (expected {acked[key]!r})")
        if missing:
            raise TestFailure(f"node{i} lacks {len(missing)} acknowledged write(s): "
                              + ", ".join(missing[:10]))
    log(f"final: all {len(acked)} acknowledged writes present on all {NODES} nodes")


def check_down_up(c, acked):
    """`down` keeps the data volumes; `up` again brings every acknowledged write back."""
    log("down/up: down (volumes kept), up again")
    c.compose("down", "-t", "10", timeout=180)
    vols = run(["docker", "volume", "ls", "-q", "--filter",
                f"label=com.docker.compose.project={c.project}"]).stdout.split()
    if len(vols) != NODES:
        raise TestFailure(f"after down: {len(vols)} data volume(s) left, expected {NODES}")
    t = time.monotonic()
    c.up()
    c.wait_healthy(range(NODES))
    log(f"down/up: all {NODES} nodes healthy again {time.monotonic() - t:.1f}s after up")
    check_all_writes(c, acked)


def dangling_volumes():
    return set(run(["docker", "volume", "ls", "-q", "--filter", "dangling=true"],
                   check=False).stdout.split())


def leftovers(project, volumes_before):
    # Anonymous volumes (the image's VOLUME, in `docker run` containers) carry no label:
    # any unused volume that appeared during the run counts.
    found = [f"volume {v}" for v in dangling_volumes() - volumes_before]
    for kind, cmd in [("container", ["docker", "ps", "-aq"]),
                      ("network", ["docker", "network", "ls", "-q"]),
                      ("volume", ["docker", "volume", "ls", "-q"])]:
        for label in (f"com.docker.compose.project={project}", f"raftkv.deploy-test={project}"):
            out = run(cmd + ["--filter", f"label={label}"], check=False).stdout.split()
            found += [f"{kind} {x}" for x in out]
    return sorted(set(found))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compose", required=True, help='"docker compose" or "docker-compose"')
    ap.add_argument("--project", required=True, help="compose project name (unique)")
    ap.add_argument("--image", required=True)
    ap.add_argument("--time-limit", type=int, default=600, help="seconds for the whole run")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise TestFailure(f"interrupted by signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, lambda s, f: (_ for _ in ()).throw(
        TestFailure(f"the run exceeded its time limit of {args.time_limit}s")))
    signal.alarm(args.time_limit)

    volumes_before = dangling_volumes()
    c = Cluster(args.compose.split(), args.project, args.image)
    report = {}
    writer = None
    ok = False
    try:
        check_single_node(args.image, args.project)
        log(f"cluster: {args.compose} -p {args.project} up -d (client ports {c.client_port}, "
            f"gRPC ports {c.grpc_port} on 127.0.0.1)")
        t = time.monotonic()
        c.up()
        c.wait_healthy(range(NODES))
        leader, st = wait_for("a leader", c.leader, 20)
        log(f"cluster: all {NODES} nodes healthy {time.monotonic() - t:.1f}s after up; "
            f"node{leader} leads (term {st['term']})")
        check_protocols(c)
        writer = Writer(c)
        writer.start()
        check_kill_leader(c, writer, report)
        check_pause(c, report)
        check_disconnect(c, report)
        writer.stop.set()
        writer.join(10)
        log(f"writer: {len(writer.acked)} acknowledged, {sum(writer.errors.values())} refused "
            f"{dict(writer.errors)}, {writer.unknown} connection errors/timeouts")
        if len(writer.acked) < 50:
            raise TestFailure(f"only {len(writer.acked)} background writes acknowledged")
        acked = {**c.acked, **writer.snapshot()}
        check_all_writes(c, acked)
        check_down_up(c, acked)
        ok = True
    except TestFailure as e:
        log(f"FAILED: {e}")
        for i in range(NODES):
            if c.cid[i]:
                logs = run(["docker", "logs", "--tail", "15", c.cid[i]], check=False)
                print(f"---- node{i} (last log lines) ----\n{logs.stdout}{logs.stderr}",
                      flush=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if writer:
            writer.stop.set()
        log("teardown: down -v")
        c.down()
        for cid in run(["docker", "ps", "-aq", "--filter",
                        f"label=raftkv.deploy-test={args.project}"], check=False).stdout.split():
            run(["docker", "rm", "-f", "-v", cid], check=False)
        left = leftovers(args.project, volumes_before)
        if left:
            log("FAILED: left behind: " + ", ".join(left))
            ok = False
        else:
            log("teardown: no container, network or volume of the project left")
    if ok:
        log("PASSED: failover (docker kill of the leader -> first acknowledged write) "
            f"{report['failover_s']:.2f}s; restarted node caught up in "
            f"{report['catch_up_after_restart_s']:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
