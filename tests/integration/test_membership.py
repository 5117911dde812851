"""Membership changes with real kvd processes (README, "Operating a cluster"): grow 3 -> 5
while a client writes (add a learner, start it with --join, promote it once caught up),
shrink 5 -> 3 (removed nodes stop by themselves), and replace a node whose disk died
(remove it, add a new member on a fresh data dir). In each, every acknowledged write is read
back from every member at the end."""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import unittest

from harness import (KVCTL, KVD, Node, TempCluster, TextClient, _die_with_parent, free_ports,
                     kvctl_status, port_open, run, wait_for_leader, wait_until)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chaos"))
import lincheck  # noqa: E402  (tests/chaos: the linearizability checker)

# Fast elections, and snapshots + compaction early, so a joining node needs InstallSnapshot.
FAST = ["--tick-ms=50", "--election-ticks=10", "--request-timeout-ms=3000",
        "--snapshot-entries=200", "--log-retained-entries=50", "--backup-interval-ms=100"]


class JoinNode:
    """A kvd started with --join (no node_config.json): the member `member_id`."""

    def __init__(self, member_id, join_grpc_port, data_dir, extra_args=()):
        self.member_id = member_id
        self.id = member_id - 1  # NodeId position, as kvctl status prints it
        self.ip = "127.0.0.1"
        self.port, self.grpc_port = free_ports(2)
        self.join = f"127.0.0.1:{join_grpc_port}"
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.proc = None

    def peer_url(self):
        return f"http://127.0.0.1:{self.grpc_port}"

    def start(self):
        self.log = open(self.data_dir + ".log", "ab")
        self.proc = subprocess.Popen(
            [KVD, "--join", self.join, f"--member-id={self.member_id}", "--advertise-ip",
             self.ip, f"--port={self.port}", f"--grpc-port={self.grpc_port}", "--data-dir",
             self.data_dir] + self.extra_args,
            stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        wait_until(lambda: self.proc.poll() is not None or
                   (port_open(self.port) and port_open(self.grpc_port)),
                   what=f"joining kvd {self.member_id} to listen")
        if self.proc.poll() is not None:
            raise AssertionError(f"kvd {self.member_id} exited: {self.read_log()}")
        return self

    def read_log(self):
        with open(self.data_dir + ".log", "rb") as f:
            return f.read().decode(errors="replace")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self.log.close()


class Writer(threading.Thread):
    """Writes w-0, w-1, ... one at a time through any node that answers; records the keys
    acknowledged OK. Failures (an election) are retried on the next node."""

    def __init__(self, nodes):
        super().__init__(daemon=True)
        self.nodes = list(nodes)
        self.acked = []
        self.stop_flag = threading.Event()

    def run(self):
        i, n = 0, 0
        client = None
        while not self.stop_flag.is_set():
            node = self.nodes[n % len(self.nodes)]
            try:
                if client is None:
                    client = TextClient(node.port, timeout_s=10)
                reply = client.cmd(f"SET w-{i} v{i}")
            except OSError:
                reply = "ERR connection"
                client = None
            if reply == "OK":
                self.acked.append(i)
                i += 1
            else:
                n += 1  # try another node; the same key again (SET is idempotent)
                if client is not None:
                    client.close()
                    client = None
                time.sleep(0.05)  # back-off of a retry loop, not synchronisation
        if client is not None:
            client.close()

    def finish(self):
        self.stop_flag.set()
        self.join(timeout=30)
        return self.acked


class HistoryClient(threading.Thread):
    """Puts and gets on a few shared keys through random nodes, one at a time, recording a
    history for the linearizability checker (tests/chaos/lincheck.py): a put that got no OK
    may have been applied (its return is unknown), a get that failed constrains nothing and
    is left out. Values are unique, so a read names the write it saw."""

    KEYS = [f"h{k}" for k in range(6)]

    def __init__(self, nodes, cid):
        super().__init__(daemon=True)
        self.nodes = list(nodes)
        self.cid = cid
        self.ops = []
        self.stop_flag = threading.Event()

    def run(self):
        rng = random.Random(self.cid)
        n = 0
        while not self.stop_flag.is_set():
            key = rng.choice(self.KEYS)
            node = rng.choice(self.nodes)
            put = rng.random() < 0.5
            value = f"c{self.cid}-{n}"
            n += 1
            call = time.monotonic_ns()
            try:
                c = TextClient(node.port, timeout_s=5)
                reply = c.cmd(f"SET {key} {value}" if put else f"GET {key}")
                c.close()
            except OSError:
                reply = None
            ret = time.monotonic_ns()
            if put:
                if reply == "OK":
                    self.ops.append((key, lincheck.Op(call, ret, ("put", value), None)))
                else:
                    self.ops.append((key, lincheck.Op(call, lincheck.INF, ("put", value),
                                                      lincheck.UNKNOWN_OUTPUT)))
                    time.sleep(0.02)  # back-off of a retry loop, not synchronisation
            elif reply is not None and not reply.startswith("ERR"):
                out = None if reply == "KEY NOT FOUND" else reply
                self.ops.append((key, lincheck.Op(call, ret, ("get",), out)))
            else:
                time.sleep(0.02)

    def finish(self):
        self.stop_flag.set()
        self.join(timeout=30)
        return self.ops


class Histories:
    """A few HistoryClients; check() stops them and asserts the history is linearizable."""

    def __init__(self, nodes, clients=3):
        self.clients = [HistoryClient(nodes, cid) for cid in range(clients)]
        for c in self.clients:
            c.start()

    def check(self, test):
        by_key = {}
        for c in self.clients:
            for key, op in c.finish():
                by_key.setdefault(key, []).append(op)
        reads = sum(1 for ops in by_key.values() for op in ops if op.input[0] == "get")
        test.assertGreater(reads, 0, "the history clients read nothing")
        print(f"history: {sum(len(v) for v in by_key.values())} ops, {reads} reads", file=sys.stderr)
        verdict, results = lincheck.check_partitioned(lincheck.KV_MODEL, by_key, budget_s=20)
        bad = {k: lincheck.failing_window(lincheck.KV_MODEL, r, key=k)
               for k, r in results.items() if r.verdict != lincheck.OK}
        test.assertEqual(verdict, lincheck.OK, bad)


def endpoints(nodes):
    return ",".join(f"127.0.0.1:{n.grpc_port}" for n in nodes)


def kvctl(nodes, *args):
    return run([KVCTL, "--endpoints", endpoints(nodes), "--output", "json"] + list(args),
               timeout_s=30)


def member_list(nodes):
    code, out, err = kvctl(nodes, "member", "list")
    if code != 0:
        raise AssertionError(f"member list: {err}")
    return json.loads(out)


def add_learner(nodes, joiner_ports):
    port, grpc_port = joiner_ports
    code, out, err = kvctl(nodes, "member", "add", f"--peer-url=http://127.0.0.1:{grpc_port}",
                           f"--client-port={port}")
    if code != 0:
        raise AssertionError(f"member add: {err}")
    return json.loads(out)["member_id"]


def promote_when_caught_up(nodes, member_id, timeout_s=30):
    """Promotes `member_id`; while it lags the leader refuses (FAILED_PRECONDITION, 'entries
    behind'), and we ask again."""
    last = []

    def promoted():
        code, out, err = kvctl(nodes, "member", "promote", str(member_id))
        last[:] = [err]
        if code == 0:
            return True
        if "behind" in err or "not committed yet" in err or "retry" in err:
            return False
        raise AssertionError(f"member promote {member_id}: {err}")

    wait_until(promoted, timeout_s, what=f"promotion of member {member_id} (last: {last})")


def check_all(nodes, acked):
    for n in nodes:
        c = TextClient(n.port, timeout_s=30)
        for start in range(0, len(acked), 500):
            chunk = acked[start:start + 500]
            replies = c.pipeline([f"GET w-{i}" for i in chunk])
            for i, r in zip(chunk, replies):
                if r != f"v{i}":
                    raise AssertionError(f"node {n.id} (port {n.port}): GET w-{i} = {r!r}")
        c.close()


class MembershipTest(unittest.TestCase):
    def setUp(self):
        self.joiners = []

    def tearDown(self):
        for j in self.joiners:
            j.kill()
        self.cluster.__exit__(None, None, None)

    def joiner(self, member_id, via, ports):
        j = JoinNode(member_id, via.grpc_port,
                     os.path.join(self.cluster.tmp.name, f"joined{member_id}"), FAST)
        j.port, j.grpc_port = ports
        self.joiners.append(j)
        return j.start()

    def test_grow_three_to_five_while_writing(self):
        self.cluster = TempCluster(3, extra_args=FAST)
        for n in self.cluster.nodes:
            n.start()
        wait_for_leader(self.cluster.nodes)
        members = list(self.cluster.nodes)
        writer = Writer(self.cluster.nodes)
        histories = Histories(self.cluster.nodes)
        writer.start()
        # Enough entries that the log is compacted: the new nodes need a snapshot.
        wait_until(lambda: len(writer.acked) >= 600, 30, what="600 acknowledged writes")
        for expected_id in (4, 5):
            ports = free_ports(2)
            member_id = add_learner(members, ports)
            self.assertEqual(member_id, expected_id)
            listed = {m["member_id"]: m for m in member_list(members)}
            self.assertTrue(listed[member_id]["learner"])
            j = self.joiner(member_id, members[0], ports)
            # A learner serves reads once caught up (a read barrier through the leader).
            first = writer.acked[0]
            wait_until(lambda: TextClient(j.port).cmd(f"GET w-{first}") == f"v{first}", 30,
                       what=f"learner {member_id} to serve a read")
            promote_when_caught_up(members, member_id)
            # It caught up from a snapshot: the log before it was compacted away.
            self.assertIn("installing snapshot", j.read_log())
            members.append(j)
            wait_until(lambda: len(writer.acked) >= 600 + 200 * (member_id - 3), 30,
                       what="writes after the promotion")
        acked = writer.finish()
        histories.check(self)
        listed = member_list(members)
        self.assertEqual(sorted(m["member_id"] for m in listed), [1, 2, 3, 4, 5])
        self.assertFalse(any(m["learner"] for m in listed))
        # Every node lists the same five (the table is each node's own, from the log).
        for n in members:
            self.assertEqual(len(member_list([n])), 5)
        wait_for_leader(members)
        check_all(members, acked)
        # Restarts keep the members (from <data-dir>/members, not node_config.json): a
        # bootstrapped node and a joined one come back, and with two of the original three
        # down, 1, 4 and 5 make a quorum of five and take writes (the new members vote).
        node0, joined4 = self.cluster.nodes[0], members[3]
        node0.kill()
        joined4.kill()
        node0.start()
        joined4.start()
        for n in self.cluster.nodes[1:3]:
            n.kill()
        rest = [node0] + members[3:]
        wait_for_leader(rest)
        self.assertEqual(TextClient(node0.port).cmd("SET after-grow 1"), "OK")
        check_all(rest, acked)

    def test_a_node_caught_up_by_snapshot_learns_the_members_added_meanwhile(self):
        # A member added while node 2 is down, then enough writes that the log is compacted
        # past that ENTRY_CONF: node 2 catches up from a snapshot and never applies the entry.
        # The snapshot must tell it the new member's addresses (SnapshotMetadata.context), or
        # it could never reach that member (no vote to ask, no entries to send as leader).
        self.cluster = TempCluster(3, extra_args=FAST)
        for n in self.cluster.nodes:
            n.start()
        wait_for_leader(self.cluster.nodes)
        behind = self.cluster.nodes[2]
        behind.kill()
        up = self.cluster.nodes[:2]
        wait_for_leader(up)
        ports = free_ports(2)
        member_id = add_learner(up, ports)
        j = self.joiner(member_id, up[0], ports)
        writer = Writer(up)
        writer.start()
        wait_until(lambda: len(writer.acked) >= 300, 30, what="300 acknowledged writes")

        def compacted_through(n):
            found = re.findall(r"log compacted through index (\d+)", n.read_log())
            return max(map(int, found), default=0)

        # Both nodes up (so whichever leads) dropped the entry that added the member.
        wait_until(lambda: min(compacted_through(n) for n in up) > 20, 30,
                   what="compaction past the member's ENTRY_CONF")
        acked = writer.finish()
        behind.start()
        last = acked[-1]
        wait_until(lambda: TextClient(behind.port).cmd(f"GET w-{last}") == f"v{last}", 30,
                   what="node 2 to catch up")
        self.assertIn("installing snapshot", behind.read_log())
        listed = {m["member_id"]: m for m in member_list([behind])}
        self.assertIn(member_id, listed, f"node 2 does not know member {member_id}: {listed}")
        self.assertEqual(listed[member_id]["peer_url"], j.peer_url())
        check_all([behind, j], acked)

    def test_shrink_five_to_three(self):
        self.cluster = TempCluster(5, extra_args=FAST)
        for n in self.cluster.nodes:
            n.start()
        wait_for_leader(self.cluster.nodes)
        writer = Writer(self.cluster.nodes[:3])
        histories = Histories(self.cluster.nodes[:3])
        writer.start()
        wait_until(lambda: len(writer.acked) >= 300, 30, what="300 acknowledged writes")
        for victim in self.cluster.nodes[4:2:-1]:
            code, out, err = kvctl(self.cluster.nodes[:3], "member", "remove",
                                   str(victim.id + 1))
            self.assertEqual(code, 0, err)
            # A removed node stops by itself once it applied its removal.
            wait_until(lambda: victim.proc.poll() is not None, 30,
                       what=f"removed node {victim.id} to exit")
        acked = writer.finish()
        histories.check(self)
        rest = self.cluster.nodes[:3]
        self.assertEqual(sorted(m["member_id"] for m in member_list(rest)), [1, 2, 3])
        wait_for_leader(rest)
        check_all(rest, acked)
        # Three voters now: one down leaves a quorum of two.
        rest[2].kill()
        wait_for_leader(rest[:2])
        self.assertEqual(TextClient(rest[0].port).cmd("SET after-shrink 1"), "OK")

    def test_a_node_removed_while_down_stops_when_it_comes_back(self):
        # Its own log never gets its removal, so it cannot learn it from the log: it still
        # thinks it is a voter. The members that applied the removal refuse its messages and
        # tell it why, and it stops instead of campaigning forever.
        self.cluster = TempCluster(3, extra_args=FAST)
        for n in self.cluster.nodes:
            n.start()
        wait_for_leader(self.cluster.nodes)
        victim, rest = self.cluster.nodes[2], self.cluster.nodes[:2]
        self.assertEqual(victim.stop(), 0)
        code, out, err = kvctl(rest, "member", "remove", str(victim.id + 1))
        self.assertEqual(code, 0, err)
        victim.start(wait=False)
        wait_until(lambda: victim.proc.poll() is not None, 30,
                   what="the removed node to exit after its restart")
        self.assertEqual(victim.proc.returncode, 0, victim.read_log())
        self.assertRegex(victim.read_log(), r"was removed from the cluster")
        wait_for_leader(rest)
        self.assertEqual(TextClient(rest[0].port).cmd("SET after-removal 1"), "OK")

    def test_replace_wiped_node(self):
        self.cluster = TempCluster(3, extra_args=FAST)
        for n in self.cluster.nodes:
            n.start()
        wait_for_leader(self.cluster.nodes)
        writer = Writer(self.cluster.nodes[:2])
        histories = Histories(self.cluster.nodes[:2])
        writer.start()
        wait_until(lambda: len(writer.acked) >= 300, 30, what="300 acknowledged writes")
        dead = self.cluster.nodes[2]
        dead.kill()
        shutil.rmtree(dead.data_dir)  # its disk died
        survivors = self.cluster.nodes[:2]
        code, out, err = kvctl(survivors, "member", "remove", str(dead.id + 1))
        self.assertEqual(code, 0, err)
        ports = free_ports(2)
        member_id = add_learner(survivors, ports)
        self.assertEqual(member_id, 4)  # ids are never reused
        j = self.joiner(member_id, survivors[0], ports)
        promote_when_caught_up(survivors, member_id)
        members = survivors + [j]
        wait_until(lambda: len(writer.acked) >= 600, 30, what="writes after the replacement")
        acked = writer.finish()
        histories.check(self)
        self.assertEqual(sorted(m["member_id"] for m in member_list(members)), [1, 2, 4])
        wait_for_leader(members)
        check_all(members, acked)

    @unittest.skipUnless(shutil.which("etcdctl"), "etcdctl not installed")
    def test_etcdctl_member_commands(self):
        self.cluster = TempCluster(3, extra_args=FAST)
        for n in self.cluster.nodes:
            n.start()
        leader = wait_for_leader(self.cluster.nodes)
        env = {"ETCDCTL_API": "3"}
        etcdctl = [shutil.which("etcdctl"), f"--endpoints=127.0.0.1:{leader.grpc_port}"]
        code, out, err = run(etcdctl + ["member", "add", "n3", "--peer-urls=http://127.0.0.1:1",
                                        "--learner"], env=env)
        self.assertEqual(code, 0, err)
        self.assertIn("Member                4 added", out)
        code, out, err = run(etcdctl + ["member", "list", "-w", "json"], env=env)
        self.assertEqual(code, 0, err)
        listed = {m["ID"]: m for m in json.loads(out)["members"]}
        self.assertEqual(sorted(listed), [1, 2, 3, 4])
        self.assertTrue(listed[4].get("isLearner"))
        self.assertEqual(listed[4]["peerURLs"], ["http://127.0.0.1:1"])
        self.assertEqual(listed[1]["peerURLs"], [f"http://127.0.0.1:{self.cluster.nodes[0].grpc_port}"])
        # A follower passes the change on to the leader (etcdctl does not look for the
        # leader itself), and answers with the leader's answer.
        follower = next(n for n in self.cluster.nodes if n is not leader)
        code, out, err = run([shutil.which("etcdctl"), f"--endpoints=127.0.0.1:{follower.grpc_port}",
                              "member", "remove", "4"], env=env)  # hex id
        self.assertEqual(code, 0, err)
        self.assertIn("Member                4 removed", out)
        code, out, err = run(etcdctl + ["member", "remove", "4"], env=env)
        self.assertIn("NotFound", err)
        code, out, err = run(etcdctl + ["member", "list"], env=env)
        self.assertEqual(len(out.strip().splitlines()), 3)


if __name__ == "__main__":
    unittest.main()
