"""Issue 10 item 3: a retried write is applied once, and the answer says so.

The scenario: a client writes through a follower, which forwards the write to the leader; the
leader commits and applies it and dies before anyone hears back (the test seam
RAFTKV_CRASH_AFTER_APPLYING_KEY makes the leader _exit right after applying the put that
creates the key). The client then retries on another node with its session. Exactly one
application must show: the key's version is 1 and its mod_revision is the revision the
client was answered with.
"""
import json
import os
import unittest

from harness import (BIN, KVCTL, TempCluster, TextClient, backup_lag, backup_locked,
                     resp_info, run, wait_for_leader, wait_until)

FAST = ["--tick-ms=50", "--election-ticks=10", "--request-timeout-ms=3000"]
KEY = "exactly-once"
CRASHED_AFTER_APPLYING = 87  # raft_loop.cc, kCrashedAfterApplying


def endpoints(nodes):
    return ",".join(f"127.0.0.1:{n.grpc_port}" for n in nodes)


class SessionRetryTest(unittest.TestCase):
    def setUp(self):
        self.cluster = TempCluster(3, extra_args=FAST)
        for n in self.cluster.nodes:
            n.env["RAFTKV_CRASH_AFTER_APPLYING_KEY"] = KEY  # acts only on the leader
            n.start()
        self.leader = wait_for_leader(self.cluster.nodes)
        self.followers = [n for n in self.cluster.nodes if n is not self.leader]

    def tearDown(self):
        self.cluster.__exit__(None, None, None)

    def leader_died_after_applying(self):
        code = self.leader.proc.wait(timeout=30)
        self.assertEqual(code, CRASHED_AFTER_APPLYING, self.leader.read_log()[-2000:])

    def read_back(self):
        wait_for_leader(self.followers)
        code, out, err = run([KVCTL, "--endpoints", endpoints(self.followers), "--output",
                              "json", "get", KEY])
        self.assertEqual(code, 0, err)
        return json.loads(out)

    def test_kvctl_retry_through_another_node_applies_once(self):
        # kvctl gives each attempt 300 ms, less than an election takes (500-1000 ms here): the
        # follower's attempt outlasts that, so kvctl sends the write again, to the other
        # follower and back, under the same session and sequence, until a new leader answers.
        code, out, err = run([KVCTL, "--endpoints", endpoints(self.followers), "--timeout-ms",
                              "300", "--output", "json", "put", KEY, "v1"], timeout_s=60)
        self.leader_died_after_applying()
        self.assertEqual(code, 0, f"kvctl put: exit {code}: {err}")
        answered = json.loads(out)["revision"]
        kv = self.read_back()
        self.assertEqual(kv["value"], "v1")
        self.assertEqual(kv["version"], 1, f"applied more than once: {kv}")
        self.assertEqual(kv["mod_revision"], answered,
                         f"the answer is not the first application's: {kv}, answered {answered}")

    def test_text_session_retry_on_another_node_applies_once(self):
        first, other = self.followers
        c = TextClient(first.port, timeout_s=30)
        self.assertEqual(c.cmd("SESSION 4242 1"), "OK")
        # The follower forwarded it; the leader applied it and died. The answer is OK (the
        # follower sent it again to the new leader, which found it applied) or ERR UNKNOWN
        # (outcome unknown): never ERR UNAVAILABLE ("not applied"), which would be a lie.
        reply = c.cmd(f"SET {KEY} text-v1")
        self.leader_died_after_applying()
        self.assertTrue(reply == "OK" or reply.startswith("ERR UNKNOWN "), reply)
        wait_for_leader(self.followers)
        # The client retries on the other node under the same session and sequence.
        c2 = TextClient(other.port, timeout_s=30)
        self.assertEqual(c2.cmd("SESSION 4242 1"), "OK")
        self.assertEqual(c2.cmd(f"SET {KEY} text-v1"), "OK")
        # A later write of another client is not undone by a late retry.
        self.assertEqual(TextClient(other.port).cmd(f"SET {KEY} newer"), "OK")
        self.assertEqual(c2.cmd("SESSION 4242 1"), "OK")
        self.assertEqual(c2.cmd(f"SET {KEY} text-v1"), "OK")
        kv = self.read_back()
        self.assertEqual(kv["value"], "newer")
        self.assertEqual(kv["version"], 2, f"expected the session write once, then 'newer': {kv}")


class ForwardSessionTest(unittest.TestCase):
    """A follower forwards the writes that come without a session under sessions of its own
    (so a Forward that broke can be sent again without applying it twice). The leader keeps
    only a window of results per session: with more forwards in flight than that, they
    applied out of order, the window moved past sequences still in flight, and those were
    refused when they arrived: clients were told "outcome unknown" for writes never
    applied."""

    def test_hundreds_of_writes_in_flight_through_a_follower_all_succeed(self):
        with TempCluster(3, extra_args=FAST + ["--session-window=16"]) as cluster:
            self.sets_through_a_follower(cluster, clients=200, ops=6000)

    def test_single_writes_of_many_connections_share_forward_calls(self):
        """A follower forwards the single writes it took in one loop iteration, from all its
        connections, in one Forward call (one RPC per write before: as many calls as
        writes). Counted by the follower (INFO raft_forward_calls / raft_forwarded_writes),
        not timed; every write must still succeed."""
        with TempCluster(3, extra_args=FAST) as cluster:
            follower = self.sets_through_a_follower(cluster, clients=100, ops=3000)
            info = resp_info(follower.port)
            writes, calls = int(info["raft_forwarded_writes"]), int(info["raft_forward_calls"])
            self.assertGreaterEqual(writes, 3000, info)
            self.assertLess(calls, writes, f"{calls} Forward calls for {writes} writes")

    def test_writes_held_for_a_lagging_backup_go_to_the_leader_together(self):
        """A follower whose backup lags past --max-backup-lag-entries holds the writes it
        takes until the backup catches up; then it forwards them to the leader together, as
        it does the writes of one loop iteration (it sent one Forward per held write before).
        Counted by the follower (INFO raft_forward_calls), not timed."""
        held = 20
        flags = [f for f in FAST if not f.startswith("--request-timeout-ms")] + [
            "--request-timeout-ms=120000", "--max-backup-lag-entries=5",
            "--backup-lag-wait-ms=60000"]
        with TempCluster(3, extra_args=flags) as cluster:
            for n in cluster.nodes:
                n.start()
            leader = wait_for_leader(cluster.nodes)
            follower = next(n for n in cluster.nodes if n is not leader)
            with backup_locked(follower):
                writer = TextClient(leader.port)
                for i in range(8):
                    self.assertEqual(writer.cmd(f"SET before-{i} v"), "OK")
                wait_until(lambda: backup_lag(follower) > 5,
                           what="the follower's backup lagging past 5")
                clients = [TextClient(follower.port, timeout_s=60) for _ in range(held)]
                for i, c in enumerate(clients):
                    c.send(f"SET held-{i} v\n".encode())
                wait_until(lambda: int(resp_info(follower.port)["backup_waiting_writes"]) == held,
                           what=f"{held} writes waiting for the follower's backup")
                calls_before = int(resp_info(follower.port)["raft_forward_calls"])
            self.assertEqual([c.line() for c in clients], ["OK"] * held)
            calls = int(resp_info(follower.port)["raft_forward_calls"]) - calls_before
            self.assertLessEqual(calls, 2, f"{calls} Forward calls for {held} held writes")

    def test_a_lane_carries_at_most_forward_lane_writes_in_flight(self):
        """The leader rewrites a lane's session record, which keeps a result per write in
        flight on the lane, on every write of that lane: a follower opens more lanes rather
        than let one carry more than --forward-lane-writes (INFO raft_forward_lane_max_span:
        the most one lane had in flight from its lowest unanswered write)."""
        with TempCluster(3, extra_args=FAST + ["--forward-lane-writes=4"]) as cluster:
            follower = self.sets_through_a_follower(cluster, clients=100, ops=3000)
            info = resp_info(follower.port)
            span, lanes = int(info["raft_forward_lane_max_span"]), int(info["raft_forward_lanes"])
            self.assertTrue(1 <= span <= 4, info)
            self.assertGreater(lanes, 1, info)

    def sets_through_a_follower(self, cluster, clients, ops):
        """Starts `cluster`, sends `ops` RESP SETs from `clients` connections (one request in
        flight each) to a follower, checks that all succeed; returns the follower."""
        for n in cluster.nodes:
            n.start()
        leader = wait_for_leader(cluster.nodes)
        follower = next(n for n in cluster.nodes if n is not leader)
        code, out, err = run([os.path.join(BIN, "kvbench"), "--backend", "resp",
                              "--endpoints", f"127.0.0.1:{follower.port}",
                              "--clients", str(clients), "--conns", str(clients),
                              "--ops", str(ops), "--duration", "60", "--keys", "1000",
                              "--format", "json"],
                             timeout_s=120)
        result = json.loads(out) if out.strip().startswith("{") else {}
        self.assertEqual(code, 0, (out + err)[-3000:])
        self.assertEqual((result["ok"], result["errors"], result["timeouts"]), (ops, 0, 0), out)
        return follower


if __name__ == "__main__":
    unittest.main()
