"""Issue 10 item 4: the raft loop only does consensus. A read that scans the whole keyspace
(RESP DBSIZE) on the leader, and a snapshot install on a follower, must not hold up the raft
loop: no leader change, and no loop iteration or gap between two ticks of even half the
election timeout (NodeStatus's loop_max_iteration_us / loop_max_tick_gap_us, shown by
`kvctl status`).

The election timeout is made short (--tick-ms=10, --election-ticks=30: 300-600 ms) so a
keyspace that loads in seconds shows the problem. Each check restarts the nodes it measures
after loading, so their figures (kept since start) cover only what is under test, not the
applies of the multi-thousand-key loading commands.
"""
import socket
import unittest

from harness import TempCluster, kvctl_status, wait_for_leader, wait_until

TICK_MS = 10
ELECTION_TICKS = 30
HALF_ELECTION_TIMEOUT_US = TICK_MS * ELECTION_TICKS * 1000 // 2
# Snapshots every 10 entries (each MSET is one): a follower that missed the loading gets one.
ARGS = [f"--tick-ms={TICK_MS}", f"--election-ticks={ELECTION_TICKS}",
        "--request-timeout-ms=20000", "--snapshot-entries=10", "--log-retained-entries=5",
        "--backup-interval-ms=200"]
KEYS = 400_000
BATCH = 10_000  # keys per MSET (--max-ops-per-request)


class Resp:
    """A RESP2 connection: commands as arrays of bulk strings, replies parsed."""

    def __init__(self, port, timeout_s=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return line.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError("connection closed")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise AssertionError(f"bad RESP reply {line!r}")

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def close(self):
        self.sock.close()


def load(node, keys):
    """MSETs keys 0..keys-1 (BATCH per command) through `node`."""
    c = Resp(node.port)
    try:
        for start in range(0, keys, BATCH):
            args = ["MSET"]
            for i in range(start, min(keys, start + BATCH)):
                args += [f"key{i:08d}", f"v{i}"]
            reply = c.cmd(*args)
            if reply != "+OK":
                raise AssertionError(f"MSET at {start}: {reply}")
    finally:
        c.close()


def status_of(node):
    st = kvctl_status([node.grpc_port], timeout_ms=5000)
    if len(st) != 1 or "error" in st[0]:
        raise AssertionError(f"kvctl status of node {node.id}: {st}")
    return st[0]


class LoopLatencyTest(unittest.TestCase):
    def setUp(self):
        self.cluster = TempCluster(3, extra_args=ARGS)
        for n in self.cluster.nodes:
            n.start()
        self.leader = wait_for_leader(self.cluster.nodes)

    def tearDown(self):
        self.cluster.__exit__(None, None, None)

    def assert_loop_kept_time(self, node, what):
        s = status_of(node)
        for field in ("loop_max_iteration_us", "loop_max_tick_gap_us"):
            self.assertIn(field, s, f"kvctl status --output json lacks {field}: {s}")
            self.assertLess(
                s[field], HALF_ELECTION_TIMEOUT_US,
                f"node {node.id} ({what}): {field} = {s[field]} us, half the election timeout "
                f"is {HALF_ELECTION_TIMEOUT_US} us")

    def test_dbsize_on_leader_keeps_the_loop_on_time(self):
        load(self.leader, KEYS)
        # The loading applies are not under test: restart so the figures start afresh.
        for n in self.cluster.nodes:
            n.stop()
        for n in self.cluster.nodes:
            n.start()
        leader = wait_for_leader(self.cluster.nodes)
        term = status_of(leader)["term"]
        c = Resp(leader.port)
        try:
            for _ in range(5):
                self.assertEqual(c.cmd("DBSIZE"), KEYS)
        finally:
            c.close()
        after = status_of(leader)
        self.assertEqual((after["term"], after["leader"]), (term, leader.id),
                         "the leader changed while it counted the keyspace")
        self.assert_loop_kept_time(leader, "DBSIZE over the whole keyspace")
        for n in self.cluster.nodes:
            if n is not leader:
                self.assert_loop_kept_time(n, "follower while the leader counted")

    def test_snapshot_install_keeps_the_follower_loop_on_time(self):
        follower = next(n for n in self.cluster.nodes if n is not self.leader)
        follower.kill()
        before = self.leader.read_log().count("log compacted")
        load(self.leader, KEYS)
        wait_until(lambda: self.leader.read_log().count("log compacted") >= before + 1,
                   timeout_s=60, what="the leader compacting its log past the follower")
        term = status_of(self.leader)["term"]
        follower.start()
        wait_until(lambda: status_of(follower)["applied_index"] >=
                   status_of(self.leader)["applied_index"] and
                   "installing snapshot" in follower.read_log(),
                   timeout_s=60, what="the follower to install the snapshot and catch up")
        self.assertEqual(status_of(self.leader)["term"], term,
                         "the leader changed while the follower installed the snapshot")
        self.assert_loop_kept_time(follower, "installing a snapshot")


if __name__ == "__main__":
    unittest.main()
