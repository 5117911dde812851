#!/usr/bin/env python3
"""raftkv chaos test: a cluster of real kvd processes, a seeded schedule of faults, clients
over text, RESP and etcd gRPC, and checkers (linearizability, durability, convergence,
availability). See tests/chaos/README.md; normally started through tests/chaos/run.

  chaos.py run   [options]          one campaign (needs root for network namespaces)
  chaos.py check DIR                re-run the checkers on a saved run directory

Exit codes: 0 every check passed; 1 a violation (or a node crashed / the cluster did not
recover); 3 inconclusive (a key's linearizability search ran out of budget); 2 usage or
set-up error.
"""
import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import checks  # noqa: E402
import lincheck as L  # noqa: E402

C = None  # the clients module, imported after entering the client namespace (gRPC threads)

FAULT_GROUPS = {
    "kill": ["kill-leader", "kill-leader-burst", "kill-random"],
    "pause": ["pause-leader", "pause-random"],
    "partition": ["partition-leader", "partition-halves", "partition-bridge",
                  "partition-one-way"],
    "restart": ["restart-leader", "restart-random"],
    "disk": ["lose-disk", "lose-disk-crash"],
}
KEY_PREFIX = "ck:"
SUBNET = "10.213.77"  # only ever assigned inside this run's own namespaces


def now_ns():
    return time.monotonic_ns()


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- network: one namespace per node, one for the clients, a bridge in a hub namespace ----

class NetnsNetwork:
    """Hosts in network namespaces on a private bridge; nothing is added to the caller's
    namespace. Partitions are nftables drop rules on each node's input."""

    mode = "netns"

    def __init__(self, tag, n):
        self.tag, self.n = tag, n
        self.hub = f"{tag}h"
        self.client_ns = f"{tag}c"
        self.node_ns = [f"{tag}n{i}" for i in range(n)]
        self.ips = [f"{SUBNET}.{11 + i}" for i in range(n)]
        self.client_ip = f"{SUBNET}.2"
        self.created = []
        self.blocked = set()  # (to, from): `to` drops packets from `from`

    @staticmethod
    def sh(*args, input=None):
        p = subprocess.run(args, input=input, capture_output=True, text=True, timeout=20)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def _add_ns(self, name):
        self.sh("ip", "netns", "add", name)
        self.created.append(name)

    def setup(self, state_file):
        self._add_ns(self.hub)
        self._save(state_file)
        self.sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        self.sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        hosts = list(zip(self.node_ns, self.ips)) + [(self.client_ns, self.client_ip)]
        for idx, (ns, ip) in enumerate(hosts):
            self._add_ns(ns)
            self._save(state_file)
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
            self.sh("ip", "-n", self.hub, "link", "add", f"p{idx}", "type", "veth", "peer",
                    "name", "eth0", "netns", ns)
            self.sh("ip", "-n", self.hub, "link", "set", f"p{idx}", "master", "br0", "up")
            self.sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            self.sh("ip", "-n", ns, "link", "set", "eth0", "up")
        for ns in self.node_ns:
            self.sh("ip", "netns", "exec", ns, "nft", "-f", "-", input=(
                "table inet chaos {\n"
                "  chain input { type filter hook input priority 0; policy accept; }\n"
                "}\n"))

    def _save(self, state_file):
        with open(state_file, "w") as f:
            json.dump({"namespaces": self.created}, f)

    def enter_client_ns(self):
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.client_ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET, this thread (and its children)
                e = ctypes.get_errno()
                raise OSError(e, f"setns into {self.client_ns}: {os.strerror(e)}")
        finally:
            os.close(fd)

    def exec_prefix(self, i):
        return ["ip", "netns", "exec", self.node_ns[i]]

    def block(self, to, frm):
        """Node `to` stops receiving packets from node `frm` (one direction)."""
        if (to, frm) in self.blocked:
            return
        self.sh("ip", "netns", "exec", self.node_ns[to], "nft", "add", "rule", "inet", "chaos",
                "input", "ip", "saddr", self.ips[frm], "drop")
        self.blocked.add((to, frm))

    def cut(self, a_side, b_side, one_way=False):
        """Packets from a_side no longer reach b_side (and, unless one_way, the reverse)."""
        for a in a_side:
            for b in b_side:
                self.block(b, a)
                if not one_way:
                    self.block(a, b)

    def heal(self):
        for i in range(self.n):
            self.sh("ip", "netns", "exec", self.node_ns[i], "nft", "flush", "chain", "inet",
                    "chaos", "input")
        self.blocked.clear()

    def teardown(self):
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.created = []


class LoopbackNetwork:
    """Fallback where namespaces cannot be made: every node on 127.0.0.1, no partitions."""

    mode = "loopback"

    def __init__(self, n):
        self.n = n
        self.ips = ["127.0.0.1"] * n
        self.blocked = set()

    def setup(self, state_file):
        with open(state_file, "w") as f:
            json.dump({"namespaces": []}, f)

    def enter_client_ns(self):
        pass

    def exec_prefix(self, i):
        return []

    def cut(self, *a, **k):
        raise RuntimeError("partitions need network namespaces")

    def heal(self):
        pass

    def teardown(self):
        pass


def netns_available():
    probe = f"rkvprobe{os.getpid()}"
    try:
        p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                           timeout=10)
        if p.returncode != 0:
            return False, p.stderr.strip()
        q = subprocess.run(["ip", "netns", "exec", probe, "nft", "list", "ruleset"],
                           capture_output=True, text=True, timeout=10)
        if q.returncode != 0:
            return False, "nft: " + q.stderr.strip()
        return True, ""
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


# --- the kvd processes --------------------------------------------------------------------

class Node:
    def __init__(self, idx, cluster, net, kvd, config_path, data_dir, log_path, extra, pids_file):
        self.idx, self.cluster, self.net, self.kvd = idx, cluster, net, kvd
        self.config_path, self.data_dir, self.log_path = config_path, data_dir, log_path
        self.extra, self.pids_file = extra, pids_file
        self.proc = None
        self.paused = False
        self.expected_down = True
        self.starts = 0

    @property
    def ip(self):
        return self.cluster[self.idx]["ip"]

    @property
    def port(self):
        return self.cluster[self.idx]["port"]

    @property
    def grpc_port(self):
        return self.cluster[self.idx]["grpc_port"]

    def start(self):
        logf = open(self.log_path, "ab")
        logf.write(f"\n==== chaos: start #{self.starts} at {now_ns()}\n".encode())
        logf.flush()
        self.proc = subprocess.Popen(
            self.net.exec_prefix(self.idx) +
            [self.kvd, f"--id={self.idx}", "--config", self.config_path, "--data-dir",
             self.data_dir] + self.extra,
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)  # Ctrl-C reaches the driver only; it stops the nodes
        logf.close()
        with open(self.pids_file, "a") as f:
            f.write(f"{self.proc.pid}\n")
        self.starts += 1
        self.paused = False
        self.expected_down = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        self.expected_down = True
        if self.alive():
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.paused = False

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False

    def terminate(self, timeout_s=20):
        """SIGTERM and wait; returns (exit code or None if it hung and was killed, seconds)."""
        self.expected_down = True
        if not self.alive():
            return self.proc.returncode if self.proc else None, 0.0
        if self.paused:
            self.resume()
        t = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            code = None
        return code, time.monotonic() - t

    def log_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""


def port_open(ip, port, timeout=0.5):
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- the run ------------------------------------------------------------------------------

class Run:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(args.seed)  # the fault schedule
        self.stop_clients = threading.Event()
        self.hist_lock = threading.Lock()
        self.ops = []
        self.faults = []
        self.anomalies = []
        self.op_id = 0
        self.fault_id = 0
        self.t0 = now_ns()
        self.hist_file = None
        self.nodes = []
        self.net = None
        self.status_clients = {}

    # history ----------------------------------------------------------------------------
    def record(self, rec):
        with self.hist_lock:
            if self.hist_file is None:  # a straggler after the history was closed
                return
            if rec.get("type") == "op":
                self.op_id += 1
                rec["id"] = self.op_id
                self.ops.append(rec)
            self.hist_file.write(json.dumps(rec) + "\n")

    def fault_event(self, kind, phase, targets=(), detail="", fault_id=None):
        if fault_id is None:
            self.fault_id += 1
            fault_id = self.fault_id
        rec = {"type": "fault", "fault_id": fault_id, "kind": kind, "phase": phase,
               "t": now_ns(), "targets": sorted(targets), "detail": detail}
        with self.hist_lock:
            self.faults.append(rec)
            self.hist_file.write(json.dumps(rec) + "\n")
            self.hist_file.flush()
        log(f"fault {fault_id} {phase:5s} {kind} {sorted(targets)} {detail}")
        return fault_id

    def anomaly(self, kind, node, detail):
        rec = {"type": "anomaly", "kind": kind, "node": node, "t": now_ns(), "detail": detail}
        with self.hist_lock:
            self.anomalies.append(rec)
            self.hist_file.write(json.dumps(rec) + "\n")
        log(f"ANOMALY {kind} node {node}: {detail.splitlines()[0] if detail else ''}")

    # cluster ----------------------------------------------------------------------------
    def status_all(self, timeout_s=1.0):
        """{node: status dict} for the nodes that answered."""
        def one(i):
            if not self.nodes[i].alive() or self.nodes[i].paused:
                return i, None
            cl = self.status_clients.get(i)
            if cl is None:
                cl = C.EtcdClient(self.nodes[i].ip, self.nodes[i].grpc_port, timeout_s, "safe")
                self.status_clients[i] = cl
            r = cl.status()
            return i, (r.result if r.outcome == "ok" else None)
        with ThreadPoolExecutor(len(self.nodes)) as ex:
            res = dict(ex.map(one, range(len(self.nodes))))
        return {i: s for i, s in res.items() if s is not None}

    def leader(self):
        """The node that claims leadership in the highest term, or None."""
        st = self.status_all()
        claims = [(s["term"], i) for i, s in st.items() if s["leader"] == s["member"]]
        return max(claims)[1] if claims else None

    def wait_leader(self, timeout_s, exclude=()):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ld = self.leader()
            if ld is not None and ld not in exclude:
                return ld
            time.sleep(0.1)
        return None

    def wait_serving(self, timeout_s):
        """Until every node names the same leader and serves a linearizable read."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.status_all()
            leaders = {s["leader"] for s in st.values()}
            if len(st) == len(self.nodes) and len(leaders) == 1 and 0 not in leaders:
                good = True
                for n in self.nodes:
                    r = C.TextClient(n.ip, n.port, 3.0, "safe")
                    rep = r.get(KEY_PREFIX + "probe")
                    r.close()
                    if rep.outcome != "ok":
                        good = False
                        break
                if good:
                    return True
            time.sleep(0.2)
        return False

    def start_node(self, i, wait_s=15):
        n = self.nodes[i]
        n.start()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not n.alive():
                break
            if port_open(n.ip, n.port) and port_open(n.ip, n.grpc_port):
                return True
            time.sleep(0.05)
        code = n.proc.poll()
        self.anomaly("start-failed", i, f"kvd did not come up (exit code {code}):\n"
                     + n.log_tail())
        n.expected_down = True
        return False

    def check_crashes(self):
        for n in self.nodes:
            if not n.expected_down and n.proc is not None and n.proc.poll() is not None:
                n.expected_down = True
                self.anomaly("crash", n.idx, f"kvd exited by itself with code "
                             f"{n.proc.returncode}:\n" + n.log_tail())

    # workload ---------------------------------------------------------------------------
    def active_keys(self, t_ns):
        epoch = int((t_ns - self.t0) / 1e9 / self.args.key_seconds)
        return [f"{KEY_PREFIX}{j:05d}" for j in range(epoch, epoch + self.args.keys)]

    def client_loop(self, cid, proto):
        a = self.args
        rng = random.Random(self.seed * 1000 + cid)
        n = len(self.nodes)
        node = cid % n
        conns = {}

        def conn(i):
            if i not in conns:
                cls = C.CLIENTS[proto]
                conns[i] = cls(self.nodes[i].ip, self.nodes[i].port if proto != "etcd"
                               else self.nodes[i].grpc_port, a.op_timeout, a.error_mode)
            return conns[i]

        seq = 0
        first_seen = {}
        # Exactly-once retries (issue 10): a write whose outcome is unknown is sent again to
        # other nodes under the same session and sequence; the op's record spans every try.
        session_id = rng.getrandbits(62) + 1
        write_seq = 0
        try:
            while not self.stop_clients.is_set():
                with self.hist_lock:
                    if self.op_id >= a.max_ops:
                        break
                keys = self.active_keys(now_ns())
                key = rng.choice(keys)
                x = rng.random()
                if x < 0.45:
                    f = "put"
                elif x < 0.83:
                    f = "get"
                elif x < 0.93:
                    f = "del"
                else:
                    f = "mget" if proto != "etcd" else "get"
                rec = {"type": "op", "client": cid, "proto": proto, "node": node, "f": f}
                cl = conn(node)
                if f in ("put", "del") and a.sessions:
                    write_seq += 1
                    session = (session_id, write_seq)
                else:
                    session = None
                if f == "put":
                    seq += 1
                    value = f"v{cid}.{seq}"
                    rec.update(key=key, value=value)
                    rec["invoke"] = now_ns()
                    rep = cl.put(key, value, session) if session else cl.put(key, value)
                    rep = self.retry_write(rec, rep, conn, node, rng, session,
                                           lambda c: c.put(key, value, session))
                elif f == "get":
                    rec["key"] = key
                    rec["invoke"] = now_ns()
                    rep = cl.get(key)
                elif f == "del":
                    rec["key"] = key
                    rec["invoke"] = now_ns()
                    rep = cl.delete(key, session) if session else cl.delete(key)
                    rep = self.retry_write(rec, rep, conn, node, rng, session,
                                           lambda c: c.delete(key, session))
                else:
                    ks = rng.sample(keys, min(3, len(keys)))
                    rec["keys"] = ks
                    rec["invoke"] = now_ns()
                    rep = cl.mget(ks)
                rec["complete"] = now_ns()
                if a.inject_bug:
                    rep = self.inject(rng, f, rec, rep, first_seen)
                rec.update(outcome=rep.outcome, result=rep.result)
                if rep.error:
                    rec["error"] = rep.error
                self.record(rec)
                if rep.outcome != "ok":
                    # Another node next time: keeps the client useful while its node is cut
                    # off; a fresh connection, so a late reply is never taken for the next.
                    if proto != "etcd":
                        cl.close()
                    node = rng.randrange(n)
                    time.sleep(0.05)
                else:
                    if rng.random() < 0.02:  # wander, so every node keeps some clients
                        node = rng.randrange(n)
                    if a.think_ms:
                        time.sleep(a.think_ms / 1000.0)
        finally:
            for c in conns.values():
                try:
                    c.close()
                except Exception:
                    pass

    def retry_write(self, rec, rep, conn, node, rng, session, send):
        """A write whose outcome is unknown, sent again (up to --session-retries times) to other
        nodes under its session: the cluster applies it at most once and answers with the first
        result. Returns the last reply; rec["attempts"] counts the tries."""
        tries = 1
        n = len(self.nodes)
        while (session is not None and rep.outcome == "unknown" and
               tries <= self.args.session_retries and not self.stop_clients.is_set()):
            rec.setdefault("errors", []).append(rep.error)
            node = (node + 1 + rng.randrange(n - 1)) % n if n > 1 else node
            c = conn(node)
            if rec["proto"] != "etcd":
                c.close()  # a fresh connection: a late reply is never taken for this one
            time.sleep(0.05)
            rep = send(c)
            tries += 1
        rec["attempts"] = tries
        if tries > 1 and rep.outcome == "failed":
            # This try was not applied, but an earlier one may have been.
            rep = C.Reply("unknown", error=f"after an unknown outcome: {rep.error}")
        return rep

    def inject(self, rng, f, rec, rep, first_seen):
        """--inject-bug: the client lies in its record, to show the checkers catch it end to
        end (never used for a real verdict: the report says INJECTED)."""
        bug = self.args.inject_bug
        if bug == "stale-read" and f == "get" and rep.outcome == "ok":
            old = first_seen.setdefault(rec["key"], rep.result)
            if old != rep.result and rng.random() < 0.05:
                return C.Reply("ok", old)
        if bug == "lost-ack" and f == "put" and rep.outcome == "ok" and rng.random() < 0.02:
            return C.Reply("failed", error="injected: acknowledged write recorded as failed")
        return rep

    # faults -----------------------------------------------------------------------------
    def pick_leader_or_random(self):
        ld = self.leader()
        return ld if ld is not None else self.rng.randrange(len(self.nodes))

    def hold(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.check_crashes()
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def run_fault(self, kind, secondary=None):
        """Applies one fault, holds it, heals it. `secondary`: a kill/pause kind applied at the
        same time (combined faults). The start is recorded once the fault has taken effect
        (the process is dead or stopped, the rules are in), so availability is measured from
        the moment the cluster could notice."""
        rng = self.rng
        n = len(self.nodes)
        minority = (n - 1) // 2
        hold_s = rng.uniform(*self.args.hold)
        targets, detail, undo = [], "", []
        label = kind + (f"+{secondary}" if secondary else "")

        if kind == "kill-leader":
            t = self.pick_leader_or_random()
            targets = [t]
            self.nodes[t].kill()
            undo.append(lambda: self.start_node(t))
        elif kind == "kill-random":
            k = rng.randint(1, max(1, minority))
            targets = rng.sample(range(n), k)
            for t in targets:
                self.nodes[t].kill()
            undo.append(lambda: [self.start_node(t) for t in targets])
        elif kind == "kill-leader-burst":
            # The leader, then each new leader as soon as it is elected (the killed one is
            # restarted meanwhile, so a majority stays up).
            rounds = 3
            detail = f"{rounds} rounds"
            fid = None
            for r in range(rounds):
                t = self.pick_leader_or_random()
                targets.append(t)
                self.nodes[t].kill()
                if fid is None:
                    fid = self.fault_event(label, "start", [t], detail)
                self.wait_leader(8.0, exclude=(t,))
                self.start_node(t)
            hold_s = 0
        elif kind in ("pause-leader", "pause-random"):
            t = self.pick_leader_or_random() if kind == "pause-leader" else rng.randrange(n)
            targets = [t]
            self.nodes[t].pause()
            detail = "SIGSTOP"
            undo.append(lambda: self.nodes[t].resume())
        elif kind.startswith("partition-"):
            order = list(range(n))
            rng.shuffle(order)
            if kind == "partition-leader":
                t = self.pick_leader_or_random()
                a_side, b_side = [t], [i for i in range(n) if i != t]
                self.net.cut(a_side, b_side)
                detail = f"{a_side} | {b_side}"
            elif kind == "partition-halves":
                a_side, b_side = sorted(order[:minority]), sorted(order[minority:])
                self.net.cut(a_side, b_side)
                detail = f"{a_side} | {b_side}"
            elif kind == "partition-bridge":
                bridge = order[0]
                rest = order[1:]
                half = len(rest) // 2
                a_side, b_side = sorted(rest[:half]), sorted(rest[half:])
                self.net.cut(a_side, b_side)
                detail = f"{a_side} | {b_side}, bridge {bridge} sees both"
            else:  # one-way: the node's packets stop reaching the others, or the reverse
                t = self.pick_leader_or_random()
                others = [i for i in range(n) if i != t]
                if rng.random() < 0.5:
                    self.net.cut([t], others, one_way=True)
                    detail = f"{t} -> {others} dropped"
                else:
                    self.net.cut(others, [t], one_way=True)
                    detail = f"{others} -> {t} dropped"
                a_side = [t]
            targets = a_side
            undo.append(self.net.heal)
        elif kind in ("restart-leader", "restart-random"):
            t = self.pick_leader_or_random() if kind == "restart-leader" else rng.randrange(n)
            targets = [t]
            code, secs = self.nodes[t].terminate(timeout_s=self.args.stop_timeout)
            detail = f"SIGTERM, stopped in {secs:.2f}s"
            if code is None:
                self.anomaly("shutdown-hang", t, f"SIGTERM did not stop kvd within "
                             f"{self.args.stop_timeout}s; killed")
            elif code != 0:
                self.anomaly("shutdown-exit-code", t, f"kvd exited {code} on SIGTERM")
            hold_s = rng.uniform(0.2, 2.0)
            undo.append(lambda: self.start_node(t))
        elif kind == "lose-disk":
            t = rng.randrange(n)
            targets = [t]
            self.nodes[t].kill()
            shutil.rmtree(self.nodes[t].data_dir, ignore_errors=True)
            detail = "SIGKILL, data dir deleted"
            undo.append(lambda: self.start_node(t))
        elif kind == "lose-disk-crash":
            # Issue 9's scenario, generalised: a minority S falls behind (killed) while writes
            # commit on the rest; then the rest crash too, one of them (Y) loses its data
            # dir, and S + Y (a majority, none of which holds the newest writes) start first.
            stale = sorted(rng.sample(range(n), max(1, minority)))
            for i in stale:
                self.nodes[i].kill()
            self.hold(rng.uniform(2.0, 4.0))
            rest = [i for i in range(n) if i not in stale]
            y = rng.choice(rest)
            for i in rest:
                self.nodes[i].kill()
            shutil.rmtree(self.nodes[y].data_dir, ignore_errors=True)
            for i in stale + [y]:
                self.start_node(i)
            targets = rest
            detail = f"stale {stale} then all killed; node {y} lost its data dir; " \
                     f"{stale + [y]} restarted first"
            later = [i for i in rest if i != y]
            undo.append(lambda: [self.start_node(i) for i in later])
        else:
            raise ValueError(kind)

        if secondary:  # combined: a kill or pause on top of a partition
            s = rng.randrange(n)
            if secondary == "kill-random":
                self.nodes[s].kill()
                undo.append(lambda: self.start_node(s))
            else:
                self.nodes[s].pause()
                undo.append(lambda: self.nodes[s].resume())
            detail += f"; {secondary} on node {s}"
        if kind != "kill-leader-burst":
            fid = self.fault_event(label, "start", targets, detail)
        self.hold(hold_s)
        for u in reversed(undo):
            u()
        self.fault_event(label, "end", targets, fault_id=fid)

    def nemesis(self, deadline):
        kinds = [k for g in self.args.faults for k in FAULT_GROUPS[g]]
        if self.net.mode != "netns":
            kinds = [k for k in kinds if not k.startswith("partition-")]
        secondaries = [k for k in ("kill-random", "pause-random") if k in kinds]
        deck = []
        while time.monotonic() < deadline and not self.stop_clients.is_set():
            self.hold(self.rng.uniform(*self.args.gap))
            if time.monotonic() >= deadline:
                break
            if not deck:  # every kind once per round, in a seeded order
                deck = list(kinds)
                self.rng.shuffle(deck)
            kind = deck.pop()
            secondary = None
            if kind.startswith("partition-") and secondaries and self.rng.random() < 0.25:
                secondary = self.rng.choice(secondaries)
            self.run_fault(kind, secondary)
            with self.hist_lock:
                if self.op_id >= self.args.max_ops:
                    log("op limit reached")
                    break

    # final phase ------------------------------------------------------------------------
    def heal_all(self):
        self.net.heal()
        for n in self.nodes:
            if n.paused:
                n.resume()
        for n in self.nodes:
            if not n.alive():
                self.start_node(n.idx)

    def final_reads(self, keys):
        """Reads every key on every node (text protocol, each read linearizable); returns
        {key: {node: value}} and records each read in the history (client -1)."""
        out = {k: {} for k in keys}
        for n in self.nodes:
            cl = C.TextClient(n.ip, n.port, self.args.op_timeout, "safe")
            for k in keys:
                for attempt in range(20):
                    inv = now_ns()
                    rep = cl.get(k)
                    rec = {"type": "op", "client": -1, "proto": "text", "node": n.idx,
                           "f": "get", "key": k, "invoke": inv, "complete": now_ns(),
                           "outcome": rep.outcome, "result": rep.result, "final": True}
                    if rep.error:
                        rec["error"] = rep.error
                    self.record(rec)
                    if rep.outcome == "ok":
                        out[k][n.idx] = rep.result
                        break
                    time.sleep(0.25)
                else:
                    self.anomaly("final-read-failed", n.idx, f"GET {k}: {rep.error}")
            cl.close()
        return out

    def stop_and_read_backups(self):
        """Waits until every node has applied the same index, stops them all at once
        (SIGTERM: the backup worker applies what it queued) and reads each backup.db."""
        deadline = time.monotonic() + 30
        stable, last = 0, None
        while time.monotonic() < deadline:
            st = self.status_all()
            applied = {s["applied"] for s in st.values()}
            if len(st) == len(self.nodes) and len(applied) == 1:
                stable = stable + 1 if applied == last else 1
                last = applied
                if stable >= 3:
                    break
            time.sleep(0.3)
        for n in self.nodes:  # freeze all, then stop all: no election in between
            n.pause()
        for n in self.nodes:
            n.signal(signal.SIGTERM)
        for n in self.nodes:
            n.resume()
        for n in self.nodes:
            n.expected_down = True
            try:
                code = n.proc.wait(timeout=self.args.stop_timeout)
                if code != 0:
                    self.anomaly("shutdown-exit-code", n.idx, f"kvd exited {code} on SIGTERM")
            except subprocess.TimeoutExpired:
                self.anomaly("shutdown-hang", n.idx, "final SIGTERM did not stop kvd; killed")
                n.kill()
        backups = {}
        for n in self.nodes:
            path = os.path.join(n.data_dir, "backup.db")
            try:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
                meta = dict(db.execute("select name, value from meta").fetchall())
                rows = {k.decode() if isinstance(k, bytes) else k:
                        v.decode() if isinstance(v, bytes) else v
                        for k, v in db.execute("select key, value from kv")}
                db.close()
                backups[n.idx] = {"applied_index": int(meta.get("applied_index", -1)),
                                  "kv_checksum": meta.get("kv_checksum"),
                                  "rows": {k: v for k, v in rows.items()
                                           if k.startswith(KEY_PREFIX) and
                                           k != KEY_PREFIX + "probe"}}
            except (sqlite3.Error, OSError, ValueError) as e:
                backups[n.idx] = {"error": f"{path}: {e}"}
        return backups

    # main -------------------------------------------------------------------------------
    def start_cluster(self, meta):
        """Makes the hosts, enters the client namespace, starts every node and waits until
        they serve; `meta` (the history's first record) gets the cluster's addresses."""
        a = self.args
        os.makedirs(a.out, exist_ok=True)
        self.hist_file = open(os.path.join(a.out, "history.jsonl"), "w", buffering=1)
        state_file = os.path.join(a.workdir, "state.json")
        pids_file = os.path.join(a.workdir, "pids")
        n = a.nodes
        if self.net.mode == "netns":
            cluster = [{"ip": ip, "port": 5000, "grpc_port": 6000} for ip in self.net.ips]
        else:
            ports = free_ports(2 * n)
            cluster = [{"ip": "127.0.0.1", "port": ports[2 * i], "grpc_port": ports[2 * i + 1]}
                       for i in range(n)]
        self.net.setup(state_file)
        self.net.enter_client_ns()
        global C
        import clients as C  # noqa: E402  (after setns: gRPC's threads live in the client ns)
        config_path = os.path.join(a.workdir, "node_config.json")
        with open(config_path, "w") as f:
            json.dump(cluster, f)
        extra = a.kvd_args.split() if a.kvd_args else []
        for i in range(n):
            self.nodes.append(Node(i, cluster, self.net, os.path.join(a.bin, "kvd"), config_path,
                                   os.path.join(a.workdir, f"node{i}"),
                                   os.path.join(a.out, f"node{i}.log"), extra, pids_file))
        meta = dict(meta, type="meta", seed=a.seed, nodes=n, network=self.net.mode,
                    cluster=cluster, kvd_args=extra, t0=self.t0)
        self.hist_file.write(json.dumps(meta) + "\n")
        for i in range(n):
            if not self.start_node(i):
                raise RuntimeError(f"node {i} did not start: see {self.nodes[i].log_path}")
        if not self.wait_serving(60):
            raise RuntimeError("the cluster did not elect a leader within 60 s")

    def execute(self):
        a = self.args
        self.start_cluster({"faults": a.faults, "minutes": a.minutes, "clients": a.clients,
                            "error_mode": a.error_mode, "inject_bug": a.inject_bug})
        log(f"cluster up ({self.net.mode}); leader {self.leader()}; "
            f"{a.clients} clients; faults {','.join(a.faults)} for {a.minutes} min")

        protos = ["text", "resp", "etcd"]
        threads = [threading.Thread(target=self.client_loop, args=(c, protos[c % 3]),
                                    daemon=True, name=f"client{c}") for c in range(a.clients)]
        self.t0 = now_ns()
        for t in threads:
            t.start()
        deadline = time.monotonic() + a.minutes * 60
        self.hold(min(3.0, a.minutes * 60))  # a fault-free start
        self.nemesis(deadline)
        log("faults over; healing")
        self.heal_all()
        recovered = self.wait_serving(a.recover_timeout)
        t_recovered = now_ns()
        if not recovered:
            self.anomaly("no-recovery", -1, f"the cluster did not serve on every node within "
                         f"{a.recover_timeout}s of the heal")
        self.hold(2.0)  # acknowledged traffic after the heal, then stop the clients
        self.stop_clients.set()
        for t in threads:
            t.join(timeout=a.op_timeout + 10)
        self.check_crashes()
        workload_ops = list(self.ops)
        keys = sorted({r["key"] for r in workload_ops if "key" in r} |
                      {k for r in workload_ops for k in r.get("keys", [])})
        log(f"workload stopped: {len(workload_ops)} ops on {len(keys)} keys; final reads")
        final = self.final_reads(keys) if recovered else {}
        backups = self.stop_and_read_backups() if recovered else {}
        self.hist_file.write(json.dumps({"type": "final", "reads": final,
                                         "backups": backups, "recovered": recovered,
                                         "t_recovered": t_recovered}) + "\n")
        self.hist_file.close()
        self.hist_file = None
        return evaluate(a.out, a.check_budget, a.check_total_budget)

    def cleanup(self):
        self.stop_clients.set()
        for n in self.nodes:
            try:
                if n.alive():
                    n.signal(signal.SIGKILL)
                    n.proc.wait(timeout=10)
            except Exception:
                pass
        for cl in self.status_clients.values():
            try:
                cl.close()
            except Exception:
                pass
        if self.net is not None:
            self.net.teardown()
        if self.hist_file:
            self.hist_file.close()


# --- evaluation (also `chaos.py check DIR`) -----------------------------------------------

def evaluate(out_dir, budget_s=30.0, total_budget_s=150.0):
    path = os.path.join(out_dir, "history.jsonl")
    meta, final, ops, faults, anomalies = {}, {}, [], [], []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            t = rec.get("type")
            if t == "op":
                ops.append(rec)
            elif t == "fault":
                faults.append(rec)
            elif t == "anomaly":
                anomalies.append(rec)
            elif t == "meta":
                meta = rec
            elif t == "final":
                final = rec
    workload = [r for r in ops if not r.get("final")]
    t0 = min((r["invoke"] for r in ops), default=0)
    lin = checks.check_linearizability(ops, budget_s, total_budget_s, t0=t0)
    reads = {k: {int(n): v for n, v in by.items()} for k, by in final.get("reads", {}).items()}
    dur = checks.check_durability(workload, reads)
    conv = checks.check_convergence(reads, {int(n): b for n, b in
                                            final.get("backups", {}).items()})
    avail, failover = checks.availability(workload, faults)
    counts = checks.op_counts(workload)
    mislabelled = checks.mislabelled_writes(ops)
    fault_counts = {}
    for fr in faults:
        if fr["phase"] == "start":
            fault_counts[fr["kind"]] = fault_counts.get(fr["kind"], 0) + 1
    failures = []
    if lin["verdict"] == L.ILLEGAL:
        failures.append(f"linearizability: {len(lin['illegal_keys'])} key(s) not linearizable")
    if not dur["passed"]:
        failures.append(f"durability: {len(dur['problems'])} problem(s), "
                        f"{dur['lost_writes']} lost acknowledged write(s)")
    if not conv["passed"]:
        failures.append(f"convergence: {len(conv['problems'])} problem(s)")
    if not final.get("recovered", False):
        failures.append("recovery: the cluster did not serve on every node after healing")
    for an in anomalies:
        failures.append(f"anomaly: {an['kind']} on node {an['node']}")
    if not ops:
        failures.append("no operations were recorded")
    inconclusive = lin["verdict"] == L.UNKNOWN
    summary = {
        "seed": meta.get("seed"), "network": meta.get("network"), "nodes": meta.get("nodes"),
        "faults_enabled": meta.get("faults"), "minutes": meta.get("minutes"),
        "error_mode": meta.get("error_mode"), "inject_bug": meta.get("inject_bug"),
        "ops": counts, "faults": fault_counts, "availability": avail,
        "failover": failover, "linearizability": {k: v for k, v in lin.items()
                                                  if k != "windows"},
        "durability": dur, "convergence": conv, "anomalies": anomalies,
        "mislabelled_writes": mislabelled,
        "failures": failures, "inconclusive": inconclusive,
        "verdict": "FAIL" if failures else "INCONCLUSIVE" if inconclusive else "PASS",
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    report = render(summary, lin["windows"], meta)
    with open(os.path.join(out_dir, "report.txt"), "w") as f:
        f.write(report)
    print(report, flush=True)
    return 1 if failures else 3 if inconclusive else 0


def render(s, windows, meta):
    out = []
    w = out.append
    w("=" * 78)
    w(f"raftkv chaos: seed {s['seed']}, {s['nodes']} nodes ({s['network']}), faults "
      f"{','.join(s['faults_enabled'] or [])}, {s['minutes']} min, errors {s['error_mode']}")
    if s.get("network") == "loopback":
        w("NOTE: loopback fallback (no network namespaces): partition faults were NOT run")
    if s.get("inject_bug"):
        w(f"SELF-TEST: clients misrecorded results on purpose (--inject-bug {s['inject_bug']}); "
          "this run must FAIL")
    o = s["ops"]
    w(f"operations: {o['total']} ({', '.join(f'{k} {v}' for k, v in sorted(o['by_outcome'].items()))};"
      f" {', '.join(f'{k} {v}' for k, v in sorted(o['by_proto'].items()))};"
      f" {', '.join(f'{k} {v}' for k, v in sorted(o['by_f'].items()))})")
    w("faults injected: " + (", ".join(f"{k} {v}" for k, v in sorted(s["faults"].items()))
                             or "none"))
    f = s["failover"]
    w(f"failover: leader killed/paused/isolated/restarted -> next acknowledged write "
      f"(n={f['n']}): "
      f"p50 {checks.fmt_s(f['p50'])}, p99 {checks.fmt_s(f['p99'])}, max {checks.fmt_s(f['max'])}")
    w(f"{'fault kind':34s} {'n':>3s} {'->write p50/p99/max':>22s} {'heal->hit node p50/max':>23s}"
      f" {'ok':>6s} {'failed':>6s} {'unknown':>7s}")
    for k, v in s["availability"].items():
        w(f"{k:34s} {v['faults']:3d} "
          f"{checks.fmt_s(v['to_next_write_p50']):>7s}/{checks.fmt_s(v['to_next_write_p99'])}/"
          f"{checks.fmt_s(v['to_next_write_max']):<7s} "
          f"{checks.fmt_s(v['heal_to_write_on_hit_node_p50']):>10s}/"
          f"{checks.fmt_s(v['heal_to_write_on_hit_node_max']):<8s}"
          f" {v['ok']:6d} {v['failed']:6d} {v['unknown']:7d}")
    if o["errors"]:
        w("most frequent errors:")
        for e in o["errors"][:8]:
            w(f"  {e['count']:6d} {e['outcome']:7s} {e['error']}")
    lin = s["linearizability"]
    w(f"linearizability: {lin['verdict'].upper()} ({lin['keys']} keys, {lin['ops_checked']} ops "
      f"checked, slowest key {lin['max_key_seconds']:.2f}s)")
    if lin["inconclusive_keys"]:
        w(f"  INCONCLUSIVE keys (search over budget): {lin['inconclusive_keys'][:10]}")
    for win in windows[:5]:
        w(win)
    d = s["durability"]
    w(f"durability: {'PASS' if d['passed'] else 'FAIL'} ({d['keys']} keys read on every node; "
      f"{d['lost_writes']} lost acknowledged writes)")
    for p in d["problems"][:10]:
        w(f"  {p['kind']}: key {p['key']!r} on node {p['node']} read {p['read']!r}; "
          f"allowed {p['allowed']}")
    c = s["convergence"]
    w(f"convergence: {'PASS' if c['passed'] else 'FAIL'} (backup applied index per node "
      f"{c['applied_indexes']})")
    for p in c["problems"][:10]:
        w(f"  {p}")
    ml = s.get("mislabelled_writes", [])
    w(f"writes answered 'not applied' (read strictly) that a later read saw applied: "
      f"{len(ml)}" + (" (issue 10: errors must say whether the write happened)" if ml else ""))
    for m in ml[:5]:
        w(f"  #{m['id']} {m['proto']}@n{m['node']} put {m['key']}={m['value']}: {m['error']}")
    for an in s["anomalies"]:
        w(f"anomaly: {an['kind']} node {an['node']}: {an['detail']}")
    w(f"VERDICT: {s['verdict']}" + (f" (seed {s['seed']})" if s["verdict"] != "PASS" else ""))
    for fl in s["failures"]:
        w(f"  - {fl}")
    if s["verdict"] != "PASS":
        w(f"reproduce: tests/chaos/run --seed {s['seed']} --minutes {s['minutes']} --faults "
          f"{','.join(s['faults_enabled'] or [])} --nodes {s['nodes']}"
          + (f" --error-mode {s['error_mode']}" if s["error_mode"] != "safe" else ""))
    w("=" * 78)
    return "\n".join(out) + "\n"


# --- command line -------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="chaos.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one chaos campaign")
    r.add_argument("--minutes", type=float, default=3.0, help="length of the fault phase")
    r.add_argument("--faults", default="kill,pause,partition,restart",
                   help=f"comma-separated groups of {sorted(FAULT_GROUPS)}; 'disk' (lost data "
                        "dirs) is expected to lose writes until issue 9 lands")
    r.add_argument("--seed", type=int, default=None, help="fault schedule seed (default: time)")
    r.add_argument("--bin", default=os.path.join(REPO, "build", "bin"),
                   help="directory holding kvd (default: build/bin)")
    r.add_argument("--nodes", type=int, default=5)
    r.add_argument("--clients", type=int, default=12, help="concurrent clients (text, RESP "
                                                             "and etcd gRPC in turn)")
    r.add_argument("--keys", type=int, default=8, help="keys in use at any moment")
    r.add_argument("--key-seconds", type=float, default=3.0,
                   help="every this long one key retires and a new one starts")
    r.add_argument("--max-ops", type=int, default=2_000_000, help="stop after this many ops")
    r.add_argument("--think-ms", type=float, default=25.0, help="pause between a client's ops")
    r.add_argument("--op-timeout", type=float, default=8.0,
                   help="client-side timeout of one operation (kvd's own is 5 s)")
    r.add_argument("--hold", type=float, nargs=2, default=(3.0, 9.0), metavar=("MIN", "MAX"),
                   help="seconds a fault stays on")
    r.add_argument("--gap", type=float, nargs=2, default=(2.0, 5.0), metavar=("MIN", "MAX"),
                   help="seconds between faults")
    r.add_argument("--no-sessions", dest="sessions", action="store_false",
                   help="writes without a session (issue 10), and no retries")
    r.add_argument("--session-retries", type=int, default=2,
                   help="times a write whose outcome is unknown is sent again, to other nodes, "
                        "under its session")
    r.add_argument("--error-mode", choices=["safe", "strict"], default="safe",
                   help="which server errors count as 'not applied' (clients.py)")
    r.add_argument("--kvd-args", default="--snapshot-entries 2000 --log-retained-entries 500",
                   help="extra kvd flags (default: frequent snapshots, so lagging nodes get "
                        "InstallSnapshot)")
    r.add_argument("--no-netns", action="store_true", help="force the loopback fallback")
    r.add_argument("--inject-bug", choices=["stale-read", "lost-ack"], default=None,
                   help="self-test: clients misrecord some results; the run must FAIL")
    r.add_argument("--recover-timeout", type=float, default=60.0)
    r.add_argument("--stop-timeout", type=float, default=20.0)
    r.add_argument("--check-budget", type=float, default=30.0,
                   help="seconds of linearizability search per key before it is inconclusive")
    r.add_argument("--check-total-budget", type=float, default=150.0)
    r.add_argument("--out", default=None, help="where history, logs and report go")
    r.add_argument("--workdir", default=None, help="(set by run) scratch dir for data dirs")
    r.add_argument("--tag", default=None, help="(set by run) name prefix of the namespaces")
    c = sub.add_parser("check", help="re-check a saved run directory")
    c.add_argument("dir")
    c.add_argument("--check-budget", type=float, default=30.0)
    c.add_argument("--check-total-budget", type=float, default=150.0)
    a = p.parse_args(argv)
    if a.cmd == "run":
        groups = [g for g in a.faults.split(",") if g]
        bad = [g for g in groups if g not in FAULT_GROUPS]
        if bad:
            p.error(f"unknown fault group(s) {bad}; choose from {sorted(FAULT_GROUPS)}")
        a.faults = groups
        if a.seed is None:
            a.seed = int(time.time()) % 1_000_000
        if a.out is None:
            a.out = os.path.join(REPO, "build", "chaos", f"seed-{a.seed}-{int(time.time())}")
        a.out = os.path.abspath(a.out)
        a.bin = os.path.abspath(a.bin)
    return a


def main(argv):
    a = parse_args(argv)
    if a.cmd == "check":
        return evaluate(a.dir, a.check_budget, a.check_total_budget)
    return launch(a, Run)


def launch(a, make_run, partitions_required=False):
    """Runs make_run(a).execute() on fresh hosts and removes them on every exit path.
    Without network namespaces: the loopback fallback, or (partitions_required) SKIPPED."""
    if not os.access(os.path.join(a.bin, "kvd"), os.X_OK):
        print(f"chaos: {a.bin}/kvd not found (build it, or pass --bin)", file=sys.stderr)
        return 2
    tag = a.tag or f"rkc{os.getpid() % 100000}"
    if a.no_netns:
        use_netns, why = False, "--no-netns"
    elif os.geteuid() != 0:
        use_netns, why = False, "not root"
    else:
        use_netns, why = netns_available()
    if not use_netns:
        if partitions_required:
            print(f"chaos: SKIPPED: network namespaces unavailable ({why}); this test cuts "
                  "the network and cannot run without them", flush=True)
            return 0
        groups = [g for g in a.faults if g != "partition"]
        print(f"chaos: NOTE: network namespaces unavailable ({why}): falling back to loopback; "
              f"partition faults DISABLED (running: {','.join(groups)})", flush=True)
        a.faults = groups
    own_workdir = a.workdir is None
    if own_workdir:
        import tempfile
        a.workdir = tempfile.mkdtemp(prefix="raftkv-chaos-")
    run = make_run(a)
    run.net = NetnsNetwork(tag, a.nodes) if use_netns else LoopbackNetwork(a.nodes)

    def on_term(signum, frame):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # once: cleanup must finish
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")
    # SIGINT too: a shell starts a background job with SIGINT ignored, and tests/chaos/run
    # starts this driver that way (it forwards Ctrl-C as SIGTERM; either one cleans up).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)
    log(f"seed {a.seed}; output in {a.out}")
    try:
        return run.execute()
    except KeyboardInterrupt as e:
        print(f"chaos: interrupted ({e}); cleaning up", file=sys.stderr, flush=True)
        return 130
    except RuntimeError as e:
        print(f"chaos: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # cleanup runs to the end
            signal.signal(sig, signal.SIG_IGN)
        run.cleanup()
        shutil.rmtree(a.workdir, ignore_errors=True) if own_workdir else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
