"""Issue 13, leadership transfer: kvctl transfer-leader and etcd's MoveLeader move leadership
to the node asked for; a leader's SIGTERM hands leadership over before it stops; a rolling
restart of every node, the leader included, under a writing client loses and fails nothing.
"""
import json
import random
import shutil
import signal
import threading
import time
import unittest

from harness import (KVCTL, TempCluster, TextClient, backup_lag, backup_locked, kvctl_status,
                     resp_info, run, wait_for_leader, wait_until)

# Fast elections keep the suite short: a tick of 50 ms, elections after 0.5-1 s.
FAST = ["--tick-ms=50", "--election-ticks=10", "--request-timeout-ms=3000"]
# Followers that would elect a new leader only 10-20 s after the last heartbeat.
SLOW_ELECTION = ["--tick-ms=100", "--election-ticks=100", "--request-timeout-ms=3000"]


def endpoints(nodes):
    return ",".join(f"127.0.0.1:{n.grpc_port}" for n in nodes)


def leader_id(nodes):
    """The leader every answering node names, if they agree (else None)."""
    st = kvctl_status([n.grpc_port for n in nodes])
    leaders = {s.get("leader") for s in st if "error" not in s}
    return leaders.pop() if len(leaders) == 1 else None


def write_ok(nodes, key, value):
    """One SET tried on each node in turn; True once one answers OK."""
    for n in nodes:
        try:
            c = TextClient(n.port, timeout_s=5)
            reply = c.cmd(f"SET {key} {value}")
            c.close()
            if reply == "OK":
                return True
        except OSError:
            pass
    return False


class Writer(threading.Thread):
    """Sequential SETs of distinct keys under one session; a write refused, unknown or broken
    is resent (same session and sequence: applied at most once) to the next node until OK or
    `deadline_s` passes (then it counts as failed), as the chaos clients do."""

    def __init__(self, nodes, first=0, deadline_s=10.0):
        super().__init__(daemon=True)
        self.nodes = nodes
        self.deadline_s = deadline_s
        self.session = random.randrange(1, 2**62)
        self.prefix = f"w{first}-"
        self.seq = 0
        self.target = first
        self.conns = {}
        self.acked = {}    # key -> value, every write answered OK
        self.failed = []   # (key, last reply) of writes no node accepted in time
        self.stop_flag = threading.Event()

    def _conn(self, node):
        if node.id not in self.conns:
            self.conns[node.id] = TextClient(node.port, timeout_s=5)
        return self.conns[node.id]

    def write(self, key, value):
        self.seq += 1
        start, last = time.monotonic(), None
        while time.monotonic() - start < self.deadline_s:
            node = self.nodes[self.target % len(self.nodes)]
            try:
                replies = self._conn(node).pipeline(
                    [f"SESSION {self.session} {self.seq}", f"SET {key} {value}"])
                if replies[1] == "OK":
                    return True
                last = replies[1]
            except (OSError, ConnectionError) as e:
                last = repr(e)
                c = self.conns.pop(node.id, None)
                if c is not None:
                    c.close()
            self.target += 1
            time.sleep(0.005)  # pacing of retries against a node that refuses at once
        self.failed.append((key, last))
        return False

    def run(self):
        i = 0
        while not self.stop_flag.is_set():
            key, value = f"{self.prefix}roll{i}", f"v{i}"
            if self.write(key, value):
                self.acked[key] = value
            i += 1

    def finish(self):
        self.stop_flag.set()
        self.join(timeout=self.deadline_s + 5)
        for c in self.conns.values():
            c.close()


class TransferLeaderTest(unittest.TestCase):
    def setUp(self):
        self.cluster = TempCluster(3, extra_args=FAST)
        for n in self.cluster.nodes:
            n.start()
        self.leader = wait_for_leader(self.cluster.nodes)

    def tearDown(self):
        self.cluster.__exit__(None, None, None)

    def test_kvctl_transfer_leader_moves_leadership_to_the_node_named(self):
        nodes = self.cluster.nodes
        target = next(n for n in nodes if n is not self.leader)
        code, out, err = run([KVCTL, "--endpoints", endpoints(nodes), "--output", "json",
                              "transfer-leader", str(target.id)])
        self.assertEqual(code, 0, err)
        answer = json.loads(out)
        self.assertEqual((answer["from"], answer["to"]), (self.leader.id, target.id), answer)
        self.assertIs(wait_for_leader(nodes), target)
        self.assertTrue(write_ok(nodes, "after-transfer", "1"))

        # No ID: the most up-to-date follower, some node other than the leader.
        code, out, err = run([KVCTL, "--endpoints", endpoints(nodes), "transfer-leader"])
        self.assertEqual(code, 0, err)
        self.assertIn(f"leadership moved from node {target.id} to node", out)
        self.assertIsNot(wait_for_leader(nodes), target)

    def test_kvctl_transfer_leader_errors(self):
        nodes = self.cluster.nodes
        eps = endpoints(nodes)
        code, _, err = run([KVCTL, "--endpoints", eps, "transfer-leader", str(self.leader.id)])
        self.assertEqual(code, 2, err)
        self.assertIn("already leads", err)
        code, _, err = run([KVCTL, "--endpoints", eps, "transfer-leader", "7"])
        self.assertEqual(code, 2, err)
        self.assertIn("node 7 is not a member", err)
        followers = [n for n in nodes if n is not self.leader]
        code, _, err = run([KVCTL, "--endpoints", endpoints(followers), "transfer-leader",
                            str(followers[0].id)])
        self.assertEqual(code, 3, err)
        self.assertIn(f"the leader is node {self.leader.id}, which is not among --endpoints", err)
        self.assertIs(wait_for_leader(nodes), self.leader)  # nothing moved

    @unittest.skipUnless(shutil.which("etcdctl"), "etcdctl not installed")
    def test_etcdctl_move_leader(self):
        nodes = self.cluster.nodes
        target = next(n for n in nodes if n is not self.leader)
        # etcdctl takes the member id in hex, as `etcdctl member list` prints it.
        code, out, err = run(["etcdctl", f"--endpoints={endpoints(nodes)}", "move-leader",
                              format(target.id + 1, "x")], env={"ETCDCTL_API": "3"})
        self.assertEqual(code, 0, out + err)
        self.assertIn("Leadership transferred", out)
        self.assertIs(wait_for_leader(nodes), target)
        # Asked of a follower: the error names the leader.
        follower = next(n for n in nodes if n is not target)
        code, out, err = run(["etcdctl", f"--endpoints=127.0.0.1:{follower.grpc_port}",
                              "move-leader", format(follower.id + 1, "x")],
                             env={"ETCDCTL_API": "3"})
        self.assertNotEqual(code, 0, out)


class LeaderSigtermTest(unittest.TestCase):
    def tearDown(self):
        self.cluster.__exit__(None, None, None)

    def test_sigterm_of_the_leader_hands_leadership_over(self):
        # Elect a leader fast, then restart both followers with a 10-20 s election timeout:
        # once the leader is gone they would elect a new one only after that. A new leader
        # within 8 s can only come from the leader handing over before it stops.
        self.cluster = TempCluster(3, extra_args=FAST)
        nodes = self.cluster.nodes
        for n in nodes:
            n.start()
        leader = wait_for_leader(nodes)
        followers = [n for n in nodes if n is not leader]
        for f in followers:
            self.assertEqual(f.stop(), 0)
            f.extra_args = SLOW_ELECTION
            f.start()
        self.assertIs(wait_for_leader(nodes), leader)
        self.assertTrue(write_ok(nodes, "before", "1"))

        self.assertEqual(leader.stop(signal.SIGTERM), 0)
        # (Until their election timeout, the followers name the stopped leader.)
        wait_until(lambda: leader_id(followers) in [f.id for f in followers], timeout_s=8,
                   what="a new leader (the followers' own election is 10-20 s away)")
        self.assertTrue(wait_until(lambda: write_ok(followers, "after", "1"), timeout_s=8,
                                   what="a write served by the new leader"))
        self.assertIn("handed leadership over to", leader.read_log())

    def test_sigterm_hand_over_waits_for_writes_held_for_the_backup(self):
        """Writes the leader holds because its backup lags past --max-backup-lag-entries
        are not dropped by its SIGTERM: once leadership moved, the node drains them (they go
        to the new leader when its backup catches up) before it stops. Before, the drain
        looked only at proposed and forwarded writes: the node went on to stop its client
        connections, which wait only --shutdown-tcp-grace-ms (here 100 ms) for answers."""
        held = 5
        flags = [f for f in FAST if not f.startswith("--request-timeout-ms")] + [
            "--request-timeout-ms=120000", "--max-backup-lag-entries=5",
            "--backup-lag-wait-ms=60000", "--shutdown-transfer-timeout-ms=60000",
            "--shutdown-tcp-grace-ms=100"]
        self.cluster = TempCluster(3, extra_args=flags)
        nodes = self.cluster.nodes
        for n in nodes:
            n.start()
        leader = wait_for_leader(nodes)
        followers = [n for n in nodes if n is not leader]
        wait_until(lambda: backup_lag(leader) == 0, what="the leader's backup caught up")
        # While the leader's backup is locked, 6 writes take it past the limit and the next
        # ones wait.
        with backup_locked(leader):
            writer = TextClient(leader.port)
            for i in range(6):
                self.assertEqual(writer.cmd(f"SET before-{i} v"), "OK")
            clients = [TextClient(leader.port, timeout_s=60) for _ in range(held)]
            for i, c in enumerate(clients):
                c.send(f"SET held-{i} v\n".encode())
            wait_until(lambda: int(resp_info(leader.port)["backup_waiting_writes"]) == held,
                       what=f"{held} writes waiting for the leader's backup")
            leader.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: leader_id(followers) in [f.id for f in followers],
                       what="leadership handed over")
        self.assertEqual([c.line() for c in clients], ["OK"] * held)
        self.assertEqual(leader.stop(), 0)

    def test_rolling_restart_under_writes_fails_and_loses_nothing(self):
        self.cluster = TempCluster(3, extra_args=FAST)
        nodes = self.cluster.nodes
        for n in nodes:
            n.start()
        leader = wait_for_leader(nodes)
        # Three clients, each starting on another node: whenever leadership moves, some write
        # is on its way to the leader (directly or forwarded by a follower).
        writers = [Writer(nodes, first=i) for i in range(3)]
        for w in writers:
            w.start()
        acked = lambda: sum(len(w.acked) for w in writers)
        failed = lambda: [f for w in writers for f in w.failed]
        stopped_leaders = 0
        try:
            # The leader first, then the others (one of which leads by then).
            for i, n in enumerate([leader] + [m for m in nodes if m is not leader]):
                wait_until(lambda: acked() >= 60 * (i + 1) or failed(), timeout_s=20,
                           what="writes between restarts")
                was_leader = leader_id(nodes) == n.id
                self.assertEqual(n.stop(signal.SIGTERM), 0)
                stopped_leaders += was_leader
                n.start()
                wait_for_leader(nodes)
            count = acked()
            wait_until(lambda: acked() >= count + 60 or failed(), timeout_s=20,
                       what="writes after the last restart")
        finally:
            for w in writers:
                w.finish()
        self.assertEqual(failed(), [], "writes no node accepted")
        self.assertGreaterEqual(stopped_leaders, 1)
        wait_for_leader(nodes)
        all_acked = {k: v for w in writers for k, v in w.acked.items()}
        keys = sorted(all_acked)
        for n in nodes:  # every acknowledged write, on every node
            c = TextClient(n.port, timeout_s=30)
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                replies = c.pipeline([f"GET {k}" for k in chunk])
                missing = [(k, r) for k, r in zip(chunk, replies) if r != all_acked[k]]
                self.assertEqual(missing, [], f"node {n.id} lacks acknowledged writes")
            c.close()


if __name__ == "__main__":
    unittest.main()
