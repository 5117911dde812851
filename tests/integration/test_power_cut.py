"""Power cuts of real kvd processes (issue 16, item 1): every acknowledged write survives a
power cut that drops everything not fsynced.

Each node runs under the power-cut shim (tests/powercut/README.md), which logs what kvd
changes under its data dir since the last fsync; a power cut is SIGKILL followed by
PowerCut.cut(), which rolls the data dir back to what was synced: the Raft WAL, the identity
file, the backup, snapshots, RocksDB's files and the directories alike. RocksDB writes are
not synced (docs/architecture.md: the Raft WAL is the source of truth), so a cut node's store
is behind and must be rebuilt from its WAL at start-up.

Kill signals without the cut (plain SIGKILL) keep the page cache, so every other restart test
passes even with kvd's fsyncs removed; these do not (tests/powercut/README.md lists the
mutations tried).
"""
import os
import re
import shutil
import sys
import unittest

from harness import BIN, TempCluster, TextClient, wait_for_leader, wait_until
from test_cluster import FAST

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "powercut"))
from powercut import PowerCut  # noqa: E402

SHIM = os.environ.get("POWERCUT_SHIM", os.path.join(BIN, "..", "lib", "powercut_shim.so"))
# Snapshots, backups and compaction happen during the writes, so their files are cut too.
SNAPSHOTS = ["--snapshot-entries=150", "--log-retained-entries=50", "--backup-interval-ms=100"]
KEYS = 400


def write_keys(port, prefix, n):
    """Pipelined SETs; returns {key: value} of the acknowledged ones (all, or the test fails)."""
    c = TextClient(port, timeout_s=30)
    acked = {}
    for lo in range(0, n, 100):
        batch = [(f"{prefix}{i}", f"v{i}-{prefix}") for i in range(lo, min(n, lo + 100))]
        replies = c.pipeline([f"SET {k} {v}" for k, v in batch])
        for (k, v), r in zip(batch, replies):
            if r != "OK":
                raise AssertionError(f"SET {k}: {r}")
            acked[k] = v
    c.close()
    return acked


def missing(port, acked):
    """The acknowledged keys a node does not return with their value: {key: reply}."""
    c = TextClient(port, timeout_s=30)
    keys = sorted(acked)
    replies = c.pipeline([f"GET {k}" for k in keys])
    c.close()
    return {k: r for k, r in zip(keys, replies) if r != acked[k]}


def recovered_line(node):
    """kvd's start-up summary of its last start: term, commit, log range, applied index."""
    lines = re.findall(r"recovered: .*", node.read_log())
    return lines[-1] if lines else "(no recovery line)"


def restart(node):
    node.start()
    wait_for_leader([node])


def commit_and_applied(node):
    m = re.search(r"commit (\d+), .*applied (\d+)", recovered_line(node))
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


class PowerCutTest(unittest.TestCase):
    def start_cluster(self, n, extra_args):
        self.assertTrue(os.path.exists(SHIM), f"no shim at {SHIM}: build target powercut_shim")
        cluster = TempCluster(n, extra_args)
        self.addCleanup(cluster.__exit__, None, None, None)
        self.cuts = {}
        for node in cluster.nodes:
            # The data dir exists before kvd starts, so the cut never removes it.
            os.makedirs(node.data_dir)
            work = node.data_dir + ".powercut"
            os.makedirs(work)
            self.cuts[node.id] = PowerCut(node.data_dir, work)
            node.env = self.cuts[node.id].env(os.path.abspath(SHIM))
        return cluster

    def power_cut(self, node):
        node.kill()
        summary = self.cuts[node.id].cut()
        # Not vacuous: the cut dropped something kvd had written and not synced.
        self.assertGreater(summary["files_rolled_back"], 0, summary)
        return summary

    def cut_single_node(self, after_compaction=False):
        """A one-node cluster (snapshots and compaction on) cut after KEYS acknowledged
        writes; returns the node (stopped), the writes and what the cut dropped.
        after_compaction: cut only once the log was compacted behind a snapshot, durably, so
        the cut is sure to leave a log that starts after the snapshot. Otherwise the cut may
        fall anywhere: before the first snapshot was published (snapshots are cut in the
        background, from the backup), or after the compaction but before the WAL's compaction
        marker was synced (it is synced with the next write), which leaves the whole log."""
        node = self.start_cluster(1, FAST + SNAPSHOTS).nodes[0]
        restart(node)
        acked = write_keys(node.port, "a", KEYS)
        if after_compaction:
            wait_until(lambda: "raft: log compacted through index" in node.read_log(),
                       what="a snapshot and the log compacted behind it")
            # An acknowledged write after the compaction: its WAL sync covers the marker.
            acked.update(write_keys(node.port, "c", 1))
        return node, acked, self.power_cut(node)

    def test_single_node_keeps_every_acknowledged_write(self):
        node, acked, summary = self.cut_single_node()
        restart(node)
        self.assertEqual(missing(node.port, acked), {},
                         f"lost after a power cut ({summary}); {recovered_line(node)}")

        # Again with no snapshot (so no RocksDB flush) after the restart: the cut must take
        # the store's unsynced writes, so it comes back behind the log (applied < commit) and
        # the WAL alone carries the new writes.
        node.kill()
        node.extra_args = FAST + ["--snapshot-entries=1000000"]
        restart(node)
        acked.update(write_keys(node.port, "b", KEYS // 4))
        summary = self.power_cut(node)
        restart(node)
        commit, applied = commit_and_applied(node)
        self.assertIsNotNone(commit, recovered_line(node))
        self.assertLess(applied, commit, recovered_line(node))
        self.assertEqual(missing(node.port, acked), {},
                         f"lost after a power cut ({summary}); {recovered_line(node)}")

    def test_store_lost_after_a_power_cut_is_rebuilt_from_the_synced_snapshot(self):
        # The cut leaves the newest snapshot and the WAL after it; the store is then lost
        # altogether, so start-up must load the snapshot the cut kept (its fsyncs and its
        # directory's) and replay the WAL tail onto it.
        node, acked, summary = self.cut_single_node(after_compaction=True)
        shutil.rmtree(os.path.join(node.data_dir, "db"))
        restart(node)
        self.assertIn("loading snapshot", node.read_log().split("recovered:")[-2])
        self.assertEqual(missing(node.port, acked), {},
                         f"lost after a power cut and the store ({summary}); "
                         f"{recovered_line(node)}")

    def test_minority_power_cut_keeps_every_acknowledged_write(self):
        # The writes are acknowledged by the leader and follower F alone (G is down), so F's
        # disk is one of the two that hold them. F loses power; the leader then stops (its disk
        # intact, but down), and F and G must elect a leader that has every write: F's synced
        # log is all that carries them.
        cluster = self.start_cluster(3, FAST + SNAPSHOTS)
        for node in cluster.nodes:
            node.start(wait=False)
        leader = wait_for_leader(cluster.nodes)
        f, g = [n for n in cluster.nodes if n is not leader]
        g.kill()
        acked = write_keys(leader.port, "k", KEYS)
        summary = self.power_cut(f)
        leader.kill()

        f.start()
        g.start()
        new_leader = wait_for_leader([f, g])
        for node in (f, g):
            self.assertEqual(missing(node.port, acked), {},
                             f"node {node.id} (leader {new_leader.id}) after F's power cut "
                             f"({summary}); F {recovered_line(f)}")
        # The old leader rejoins and agrees.
        leader.start()
        wait_for_leader(cluster.nodes)
        self.assertEqual(missing(leader.port, acked), {})


if __name__ == "__main__":
    unittest.main()
