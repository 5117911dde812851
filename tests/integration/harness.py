"""Starts and talks to real kvd processes for the integration tests (stdlib only).

Every server listens on 127.0.0.1 on ports picked free at start-up (or where a test's own
cluster list puts it: test_stale_reads.py gives each node a network namespace and address of
its own, and sets Node.exec_prefix to start kvd there). Waiting is always for a
condition (a port accepting, a reply arriving, a process exiting), bounded by a deadline.
"""
import contextlib
import ctypes
import json
import os
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time

BIN = os.environ.get("RAFTKV_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
KVD = os.path.join(BIN, "kvd")
KVCTL = os.path.join(BIN, "kvctl")


def free_ports(n):
    """n distinct ports that were free a moment ago (bound then released)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_until(predicate, timeout_s=20.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)  # polling interval of a bounded wait, not synchronisation
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies, even by SIGKILL (a
    ctest timeout), so no kvd outlives its test."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Node:
    """One kvd process. `cluster` is the list of {"ip","port","grpc_port"} dicts.
    `exec_prefix`: a command kvd runs under (e.g. ["ip", "netns", "exec", NS])."""

    def __init__(self, node_id, cluster, data_dir, extra_args=()):
        self.id = node_id
        self.cluster = cluster
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.env = {}  # added to the process's environment (e.g. the power-cut shim)
        self.exec_prefix = []
        self.proc = None
        self.config_path = os.path.join(os.path.dirname(data_dir), "node_config.json")
        with open(self.config_path, "w") as f:
            json.dump(cluster, f)

    @property
    def ip(self):
        return self.cluster[self.id]["ip"]

    @property
    def port(self):
        return self.cluster[self.id]["port"]

    @property
    def grpc_port(self):
        return self.cluster[self.id]["grpc_port"]

    def start(self, wait=True):
        self.log = open(self.data_dir + ".log", "ab")
        self.proc = subprocess.Popen(
            self.exec_prefix +
            [KVD, f"--id={self.id}", "--config", self.config_path, "--data-dir", self.data_dir]
            + self.extra_args,
            stdout=self.log, stderr=subprocess.STDOUT,
            env=dict(os.environ, **self.env) if self.env else None,
            preexec_fn=_die_with_parent)
        if wait:
            wait_until(lambda: self.proc.poll() is not None or
                       (port_open(self.port, self.ip) and port_open(self.grpc_port, self.ip)),
                       what=f"kvd {self.id} to listen")
            if self.proc.poll() is not None:
                raise AssertionError(f"kvd {self.id} exited with {self.proc.returncode}: "
                                     + self.read_log())
        return self

    def read_log(self):
        with open(self.data_dir + ".log", "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout_s=30):
        """Sends `sig` and waits for exit; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout_s)
        self.log.close()
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)


class TempCluster:
    """n nodes with free ports under one temporary directory (a context manager)."""

    def __init__(self, n=1, extra_args=()):
        self.tmp = tempfile.TemporaryDirectory(prefix="raftkv-it-")
        ports = free_ports(2 * n)
        cluster = [{"ip": "127.0.0.1", "port": ports[2 * i], "grpc_port": ports[2 * i + 1]}
                   for i in range(n)]
        self.nodes = [Node(i, cluster, os.path.join(self.tmp.name, f"node{i}"), extra_args)
                      for i in range(n)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for node in self.nodes:
            try:
                node.kill()
            except Exception:
                pass
        self.tmp.cleanup()


def kvctl_status(grpc_ports, timeout_ms=1000):
    """kvctl status --output json over the given gRPC endpoints (a port on 127.0.0.1, or
    "ip:port"): a list of dicts."""
    eps = ",".join(p if isinstance(p, str) else f"127.0.0.1:{p}" for p in grpc_ports)
    code, out, err = run([KVCTL, "--endpoints", eps, "--timeout-ms", str(timeout_ms),
                          "--output", "json", "status"], timeout_s=30)
    try:
        return json.loads(out)
    except ValueError:
        return []


def wait_for_leader(nodes, timeout_s=30.0):
    """Waits until every node in `nodes` names the same leader among them and can serve a
    linearizable read; returns that leader's Node."""
    ids = {n.id: n for n in nodes}
    last = {"status": None, "reads": {}}

    def agreed():
        st = kvctl_status([f"{n.ip}:{n.grpc_port}" for n in nodes])
        last["status"], last["reads"] = st, {}
        leaders = {s.get("leader") for s in st if "error" not in s}
        if len(st) != len(nodes) or len(leaders) != 1:
            return None
        leader = leaders.pop()
        if leader is None or int(leader) not in ids:
            return None
        for n in nodes:  # a read barrier passes on every node
            try:
                c = TextClient(n.port, timeout_s=5, host=n.ip)
                reply = c.cmd("GET __raftkv_probe__")
                c.close()
            except OSError as e:
                reply = f"({e})"
            last["reads"][n.id] = reply
            if reply.startswith("ERR") or reply.startswith("("):
                return None
        return ids[int(leader)]

    try:
        return wait_until(agreed, timeout_s, what="an agreed leader")
    except AssertionError as e:
        # What the nodes said last, and how their logs end: a flake in CI carries its evidence.
        tails = "".join(f"\n--- node {n.id} log, last lines:\n" + "\n".join(log_tail(n))
                        for n in nodes)
        raise AssertionError(f"{e}; last status {last['status']}, probe reads "
                             f"{last['reads']}{tails}") from None


def log_tail(node, lines=40):
    """The last lines of a node's log (none if it never started)."""
    try:
        return node.read_log().splitlines()[-lines:]
    except OSError:
        return ["(no log)"]


class TextClient:
    """The line protocol over one TCP connection."""

    def __init__(self, port, timeout_s=10, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def line(self) -> str:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed; buffered: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode()

    def cmd(self, text: str) -> str:
        self.send(text.encode() + b"\n")
        return self.line()

    def pipeline(self, commands):
        """Sends every command, then reads one reply line each (MGET not supported here)."""
        self.send(b"".join(c.encode() + b"\n" for c in commands))
        return [self.line() for _ in commands]

    def close(self):
        self.sock.close()

    def __del__(self):
        # No socket if the connection was refused in __init__.
        if getattr(self, "sock", None) is not None:
            self.sock.close()


def resp_info(port):
    """INFO of the node at `port` (RESP), as a dict."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"*1\r\n$4\r\nINFO\r\n")
        data = b""
        while True:  # "$<length>\r\n<text>\r\n"
            if data.startswith(b"$") and b"\r\n" in data:
                head, _, rest = data.partition(b"\r\n")
                if len(rest) >= int(head[1:]) + 2:
                    break
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"INFO: connection closed after {data!r}")
            data += chunk
    text = rest[:int(head[1:])].decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def backup_lag(node):
    """Entries the node applied that its SQLite backup does not hold yet (RESP INFO)."""
    info = resp_info(node.port)
    return int(info["raft_applied_index"]) - int(info["backup_applied_index"])


@contextlib.contextmanager
def backup_locked(node):
    """Holds a write transaction on the node's backup.db: its backup cannot advance meanwhile
    (the node retries every --backup-interval-ms and raises an alarm)."""
    lock = sqlite3.connect(os.path.join(node.data_dir, "backup.db"), timeout=30,
                           isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        lock.execute("ROLLBACK")
        lock.close()


def run(args, timeout_s=30, env=None):
    """Runs a client command; returns (exit code, stdout, stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, env=e)
    return p.returncode, p.stdout, p.stderr
