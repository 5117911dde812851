"""Stale reads where one is possible: a 3-node cluster of real kvd processes, each in a network
namespace of its own (the chaos suite's NetnsNetwork: a private bridge, partitions as nftables
drop rules), and a read sent to a node that holds an old value and cannot know the new one.
It must refuse (or wait, then refuse); it must never answer the old value.

Needs root, `ip netns` and nft (the test is skipped, loudly, without them). Everything it
creates is removed on every exit path: kvd processes die with the test process (SIGKILL at
parent death), namespaces are deleted in tearDownClass and at exit (SIGTERM included), and
namespaces that a killed earlier run left (named after its pid, which is gone) are deleted
at start-up.
"""
import atexit
import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
import unittest

from harness import KVCTL, Node, TextClient, kvctl_status, run, wait_for_leader, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chaos"))
from chaos import NetnsNetwork, netns_available  # noqa: E402

# A tick of 50 ms, elections after 0.5-1 s; a read that cannot be confirmed fails after 3 s.
FAST = ["--tick-ms=50", "--election-ticks=10", "--request-timeout-ms=3000"]
TAG_PREFIX = "rksr"  # namespaces: rksr<pid>h, rksr<pid>c, rksr<pid>n<i>
CLONE_NEWNET = 0x40000000


def pid_running(pid):
    """Whether `pid` is a live process (a zombie has an empty command line)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return bool(f.read())
    except OSError:
        return False


def remove_leftovers():
    """Deletes the namespaces of earlier runs of this test whose process is gone."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         timeout=20).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(TAG_PREFIX + r"(\d+)(h|c|n\d+)", name)
        if not m or pid_running(int(m.group(1))):
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              timeout=20).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        print(f"removed leftover namespace {name}", file=sys.stderr)


def setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def resp_get(node, key, timeout_s=10):
    """GET over RESP2; returns the first reply line (a bulk header, -ERR ... or $-1)."""
    c = TextClient(node.port, timeout_s=timeout_s, host=node.ip)
    try:
        c.send(f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode())
        first = c.line()
        return c.line() if first.startswith("$") and first != "$-1" else first
    finally:
        c.close()


class StaleReadTest(unittest.TestCase):
    net = None
    home_ns_fd = None

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("SKIPPED: needs root for network namespaces")
        ok, why = netns_available()
        if not ok:
            raise unittest.SkipTest(f"SKIPPED: no network namespaces here: {why}")
        remove_leftovers()
        # SIGTERM (a ctest timeout, an operator) unwinds like Ctrl-C, so atexit runs.
        signal.signal(signal.SIGTERM, interrupt)
        atexit.register(cls.teardown_network)
        cls.tmp = tempfile.TemporaryDirectory(prefix="raftkv-stale-")
        cls.net = NetnsNetwork(f"{TAG_PREFIX}{os.getpid()}", 3)
        try:
            cls.net.setup(os.path.join(cls.tmp.name, "netns.json"))
            # This thread (and every client process it starts: kvctl) lives on the clients'
            # host from now on; tearDownClass moves it back.
            cls.home_ns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            cls.net.enter_client_ns()
        except BaseException:
            cls.teardown_network()
            raise

    @classmethod
    def teardown_network(cls):
        if cls.home_ns_fd is not None:
            setns(cls.home_ns_fd)
            os.close(cls.home_ns_fd)
            cls.home_ns_fd = None
        if cls.net is not None:
            cls.net.teardown()
            cls.net = None

    @classmethod
    def tearDownClass(cls):
        cls.teardown_network()
        cls.tmp.cleanup()

    def setUp(self):
        d = tempfile.mkdtemp(dir=self.tmp.name)
        cluster = [{"ip": ip, "port": 5000, "grpc_port": 6000} for ip in self.net.ips]
        self.nodes = [Node(i, cluster, os.path.join(d, f"node{i}"), FAST) for i in range(3)]
        self.addCleanup(self.stop_all)
        for n in self.nodes:
            n.exec_prefix = self.net.exec_prefix(n.id)
            n.start()
        self.leader = wait_for_leader(self.nodes)

    def stop_all(self):
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGCONT)
            n.kill()
        self.net.heal()

    def others(self, node):
        return [n for n in self.nodes if n is not node]

    def get(self, node, key, timeout_s=10):
        return TextClient(node.port, timeout_s=timeout_s, host=node.ip).cmd(f"GET {key}")

    def set(self, node, key, value):
        self.assertEqual(TextClient(node.port, host=node.ip).cmd(f"SET {key} {value}"), "OK")

    def assert_etcd_refused(self, node):
        """kvctl get k against `node` alone (etcd Range) fails and prints no value."""
        code, out, err = run([KVCTL, "--endpoints", f"{node.ip}:{node.grpc_port}",
                              "--timeout-ms", "5000", "get", "k"], timeout_s=30)
        print(f"  etcd Range: exit {code}: {out.strip()!r} {err.strip()!r}")
        self.assertNotIn("old", out, "etcd Range served the old value")
        self.assertNotEqual(code, 0, f"etcd Range answered {out!r} while cut off")

    def heal_and_read_new(self, node):
        """Once healed, `node` learns and serves k=new."""
        self.net.heal()
        wait_until(lambda: self.get(node, "k") == "new", timeout_s=30,
                   what=f"node {node.id} to read k=new after healing")

    def assert_refused(self, reply, old, what):
        print(f"  {what}: {reply!r}")
        self.assertNotEqual(reply, old, f"{what}: served the old value")
        self.assertTrue(reply.startswith("ERR ") or reply.startswith("-ERR"),
                        f"{what}: {reply!r}, want a refusal")

    def test_follower_cut_off_from_the_leader_never_serves_old_data(self):
        f, other = self.others(self.leader)
        self.set(self.leader, "k", "old")
        # The follower holds the old value: serving its own state would answer "old".
        wait_until(lambda: self.get(f, "k") == "old", what="the follower to apply k=old")
        self.net.cut([f.id], [self.leader.id, other.id])
        self.set(self.leader, "k", "new")  # committed by the leader and the other follower
        # First read at once, while the follower still names the leader: the read index it
        # asks for never comes, so it waits and then refuses.
        self.assert_refused(self.get(f, "k"), "old", "text GET right after the cut")
        self.assert_refused(self.get(f, "k"), "old", "text GET")
        mget = TextClient(f.port, host=f.ip).cmd("MGET k")
        self.assert_refused(mget, "old", "text MGET")
        self.assert_refused(resp_get(f, "k"), "old", "RESP GET")
        self.assert_etcd_refused(f)
        self.heal_and_read_new(f)

    def test_old_leader_isolated_before_the_write_never_serves_old_data(self):
        old = self.leader
        self.set(old, "k", "old")
        self.net.cut([old.id], [n.id for n in self.others(old)])
        # Frozen at once: it is still leader (CheckQuorum needs an election timeout of its
        # own ticks to depose it) and nothing from the new term can reach it.
        old.proc.send_signal(signal.SIGSTOP)
        try:
            new = wait_for_leader(self.others(old))
            self.set(new, "k", "new")
            self.assertEqual(self.get(new, "k"), "new")
            # The read is in the old leader's socket before it runs again: it arrives while
            # the node still believes it leads, with k=old in its state machine.
            c = TextClient(old.port, timeout_s=15, host=old.ip)
            c.send(b"GET k\n")
            c2 = TextClient(old.port, timeout_s=15, host=old.ip)
            c2.send(b"MGET k\n")
        finally:
            old.proc.send_signal(signal.SIGCONT)
        self.assert_refused(c.line(), "old", "text GET on the isolated old leader")
        self.assert_refused(c2.line(), "old", "text MGET on the isolated old leader")
        self.assert_refused(resp_get(old, "k"), "old", "RESP GET on the isolated old leader")
        self.assert_etcd_refused(old)
        self.heal_and_read_new(old)
        st = {s["id"]: s for s in kvctl_status([f"{n.ip}:{n.grpc_port}" for n in self.nodes])}
        self.assertEqual(st[old.id]["role"], "follower", st)


if __name__ == "__main__":
    unittest.main()
