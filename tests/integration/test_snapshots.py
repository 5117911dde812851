"""Snapshots, log compaction, follower catch-up by InstallSnapshot, the SQLite backup and
disaster recovery with --restore-from, on real kvd processes."""
import glob
import os
import re
import shutil
import sqlite3
import subprocess
import unittest

from harness import KVD, TempCluster, TextClient, kvctl_status, run, wait_for_leader, wait_until
from test_cluster import FAST, check_keys, write_keys
from test_sessions import resp_info

SNAP = FAST + ["--snapshot-entries=500", "--log-retained-entries=100",
               "--backup-interval-ms=200", "--wal-segment-bytes=65536"]


def backup_count(path):
    """Rows in the kv table of a live backup (read-only, as an operator's sqlite3 would)."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        n = con.execute("select count(*) from kv").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return -1


def compacted_through(node):
    """The highest index the node's log says it compacted through (0: none yet)."""
    found = re.findall(r"log compacted through index (\d+)", node.read_log())
    return max(map(int, found), default=0)


def snapshots_cut(node):
    """How many snapshots of its own the node has cut ("snapshot: <path> at index ...")."""
    return len(re.findall(r"\] snapshot: \S+ at index", node.read_log()))


def dir_bytes(path):
    return sum(os.path.getsize(f) for f in glob.glob(os.path.join(path, "*")) if os.path.isfile(f))


class SnapshotTest(unittest.TestCase):
    def start(self, extra=()):
        self.cluster = TempCluster(3, extra_args=SNAP + list(extra))
        for n in self.cluster.nodes:
            n.start()
        self.leader = wait_for_leader(self.cluster.nodes)
        self.follower = next(n for n in self.cluster.nodes if n is not self.leader)

    def tearDown(self):
        self.cluster.__exit__(None, None, None)

    def write_while_follower_down(self, keys, value):
        """Kills the follower and writes `keys`, then waits until the leader compacted its log
        past the follower's last entry (the leader's last index when it was killed). How many
        snapshots that takes depends on how fast the writes went (pipelined, they may all
        land within one backup interval), so the test waits for the index, not a count."""
        self.follower.kill()
        status = kvctl_status([self.leader.grpc_port])
        self.assertTrue(status, "kvctl status of the leader answered nothing")
        mark = status[0]["raft_index"]
        keys = write_keys(self.leader.port, keys, value)
        wait_until(lambda: compacted_through(self.leader) > mark,
                   what=f"compaction past the follower (index {mark})")
        return keys

    def test_lagging_follower_catches_up_by_snapshot(self):
        self.start()
        value = lambda k: f"val-{k}"
        keys = self.write_while_follower_down([f"s{i}" for i in range(3000)], value)
        self.follower.start()
        wait_for_leader(self.cluster.nodes)
        check_keys(self.follower.port, keys, value)
        self.assertIn("installing snapshot", self.follower.read_log())

    def test_wiped_follower_catches_up_by_snapshot(self):
        self.start()
        value = lambda k: f"w-{k}"
        keys = write_keys(self.leader.port, [f"w{i}" for i in range(2000)], value)
        wait_until(lambda: "log compacted" in self.leader.read_log(), what="compaction")
        # An operator wipes the follower's whole data dir (it had acknowledged everything).
        self.follower.kill()
        shutil.rmtree(self.follower.data_dir)
        self.follower.start()
        wait_for_leader(self.cluster.nodes)
        check_keys(self.follower.port, keys, value)
        self.assertIn("installing snapshot", self.follower.read_log())
        # And it keeps replicating afterwards.
        self.assertEqual(TextClient(self.leader.port).cmd("SET after-wipe 1"), "OK")
        self.assertEqual(TextClient(self.follower.port).cmd("GET after-wipe"), "1")

    def test_node_that_lost_its_store_rebuilds_from_snapshot_and_log(self):
        self.start()
        value = lambda k: f"l-{k}"
        keys = write_keys(self.leader.port, [f"l{i}" for i in range(2000)], value)
        # Compacted well past the first writes, so the WAL no longer holds them and the store
        # must come from a snapshot. (One early compaction message is not enough: pipelined,
        # the writes can outrun it, and the WAL drops whole segments only.)
        mark = kvctl_status([self.follower.grpc_port])[0]["raft_index"]
        keys += write_keys(self.leader.port, [f"m{i}" for i in range(1000)], value)
        wait_until(lambda: compacted_through(self.follower) > mark,
                   what=f"compaction on the follower past index {mark}")
        self.follower.kill()
        shutil.rmtree(os.path.join(self.follower.data_dir, "db"))
        self.follower.start()
        wait_for_leader(self.cluster.nodes)
        self.assertIn("loading snapshot", self.follower.read_log())
        check_keys(self.follower.port, keys, value)

    def test_backup_follows_the_log_and_sqlite3_reads_it(self):
        self.start()
        value = lambda k: f"b-{k}"
        keys = write_keys(self.leader.port, [f"b{i}" for i in range(1234)], value)
        for n in self.cluster.nodes:
            path = os.path.join(n.data_dir, "backup.db")
            wait_until(lambda: backup_count(path) == len(keys), timeout_s=20,
                       what=f"backup of node {n.id} to hold {len(keys)} keys")
            if shutil.which("sqlite3"):
                out = subprocess.run(["sqlite3", path, "select count(*) from kv"],
                                     capture_output=True, text=True, timeout=30).stdout
                self.assertEqual(out.strip(), str(len(keys)))

    def test_backup_writes_the_effects_once_per_round_without_evaluating_them(self):
        """Each node's raft loop hands the backup the effect of every entry as RocksDB
        evaluated it: the backup evaluates no command itself, and a row that many entries
        change is written once per backup round, not once per entry."""
        self.start()
        writes = 0
        for n in (self.leader, self.follower):  # the follower's go through its lanes
            c = TextClient(n.port, timeout_s=30)
            for i in range(0, 1000, 500):
                replies = c.pipeline([f"SET hot {n.id}-{j}" for j in range(i, i + 500)])
                self.assertEqual(replies, ["OK"] * 500)
            c.close()
            writes += 1000
        last = f"{self.follower.id}-999"
        for n in self.cluster.nodes:
            wait_until(lambda: int(resp_info(n.port)["raft_applied_index"]) >= writes,
                       what=f"node {n.id} to apply the {writes} writes")
            applied = int(resp_info(n.port)["raft_applied_index"])
            wait_until(lambda: int(resp_info(n.port)["backup_applied_index"]) >= applied,
                       what=f"node {n.id}'s backup to reach index {applied}")
            info = resp_info(n.port)
            self.assertEqual(info["backup_evaluated_entries"], "0", info)
            # Without the rounds' coalescing every write is a kv row and a session row or
            # none: at least `writes` rows. With it, a few per round.
            self.assertLess(int(info["backup_rows_written"]), writes // 2, info)
            con = sqlite3.connect(f"file:{os.path.join(n.data_dir, 'backup.db')}?mode=ro",
                                  uri=True, timeout=5)
            row = con.execute("select value from kv where key = ?", (b"hot",)).fetchone()
            con.close()
            self.assertEqual(row, (last.encode(),), f"node {n.id}")

    def test_rewrites_of_a_key_read_its_record_from_the_record_cache(self):
        """Applying a write reads the key's record and the session's; every node keeps the
        records of recently written keys in memory (--record-cache-bytes), so writes to a key
        written just before read neither from RocksDB. INFO counts the reads (a hit: from the
        cache, or from the writes of the entries before it in its batch)."""
        self.start()
        c = TextClient(self.follower.port, timeout_s=30)  # forwarded: a lane's session too
        before = {n.id: resp_info(n.port) for n in self.cluster.nodes}
        # One at a time, so that most writes are alone in their batch and read the cache,
        # not the writes of the entries before them in the batch.
        for i in range(200):
            self.assertEqual(c.pipeline([f"SET cached {i}"]), ["OK"])
        c.close()
        for n in self.cluster.nodes:
            wait_until(lambda: int(resp_info(n.port)["record_cache_hits"])
                       - int(before[n.id]["record_cache_hits"]) >= 360,
                       what=f"node {n.id} to read 360 records from memory", timeout_s=20)
            info = resp_info(n.port)
            # The first write of the key and of the lane read the store; no other. Without
            # the cache, about two reads per write.
            misses = int(info["record_cache_misses"]) - int(before[n.id]["record_cache_misses"])
            self.assertLess(misses, 20, info)
            self.assertGreater(int(info["record_cache_bytes"]), 0, info)

    def test_compaction_keeps_the_wal_bounded(self):
        self.start()
        sizes = []
        compactions = lambda: self.leader.read_log().count("log compacted")
        for r in range(6):
            before = compactions()
            write_keys(self.leader.port, [f"w{r}-{i}" for i in range(1000)], lambda k: "x" * 100)
            # A compaction of this round (1000 entries, a snapshot every 500), not an old one.
            wait_until(lambda: compactions() > before, what=f"a compaction in round {r}")
            sizes.append(dir_bytes(os.path.join(self.leader.data_dir, "wal")))
        # 6000 entries of ~130 bytes would be ~800 KB uncompacted; with snapshots every 500
        # entries and 64 KiB segments the WAL stays within a few segments.
        print(f"\nWAL bytes after each round of 1000 writes: {sizes}")
        self.assertLess(max(sizes[2:]), 8 * 65536, sizes)
        # More than 3 snapshots were made; --snapshots-retained (default 3) are kept: not
        # more, and not fewer (none at all would be no snapshot to send a lagging follower).
        # A 4th may exist for a moment between its rename and the prune.
        snaps = lambda: glob.glob(os.path.join(self.leader.data_dir, "snapshots", "snap-*.db"))
        wait_until(lambda: len(snaps()) == 3, timeout_s=10,
                   what="exactly 3 snapshot files (--snapshots-retained)")

    def test_backup_ahead_of_the_known_commit_index_waits_to_become_the_snapshot(self):
        # The backup (SQLite, synced) applies committed entries, but the commit index a node
        # persists may lag (a commit-only change is not synced), and the store's own unsynced
        # writes are lost with the process. A node restarting alone, with no quorum to learn
        # the commit index from, then has a backup ahead of all it may apply. Its backup cuts
        # a snapshot at once (--snapshot-entries past none); the core takes a snapshot only at
        # an index it applied, so the snapshot must wait. It crashed kvd before (seen in CI:
        # "SetSnapshot beyond the applied index", in test_power_cut's minority case).
        args = FAST + ["--backup-interval-ms=100", "--log-retained-entries=50"]
        self.cluster = TempCluster(3, extra_args=args + ["--snapshot-entries=1000000"])
        for n in self.cluster.nodes:
            n.start(wait=False)
        leader = wait_for_leader(self.cluster.nodes)
        value = lambda k: f"a-{k}"
        keys = write_keys(leader.port, [f"a{i}" for i in range(400)], value)
        last = kvctl_status([leader.grpc_port])[0]["raft_index"]
        wait_until(lambda: int(resp_info(leader.port)["backup_applied_index"]) >= last,
                   what=f"the leader's backup to apply through {last}")
        for n in self.cluster.nodes:
            n.kill()

        leader.extra_args = args + ["--snapshot-entries=150"]
        leader.start()
        made = lambda: re.search(r"\] snapshot: \S+ at index (\d+)", leader.read_log())
        wait_until(made, what="the restarted node's backup to cut a snapshot")
        commit = int(re.findall(r"recovered: term \d+, commit (\d+)", leader.read_log())[-1])
        self.assertLess(commit, int(made().group(1)),
                        "the scenario needs a persisted commit index behind the backup")
        wait_until(lambda: leader.proc.poll() is not None or "waits until" in leader.read_log(),
                   what="the snapshot deferred (or kvd gone)")
        self.assertIsNone(leader.proc.poll(), "kvd exited:\n" + leader.read_log()[-3000:])

        # With a quorum back, the node applies through the snapshot's index and offers it.
        for n in self.cluster.nodes:
            if n is not leader:
                n.start()
        wait_for_leader(self.cluster.nodes)
        for n in self.cluster.nodes:
            check_keys(n.port, keys, value)
        wait_until(lambda: "deferred snapshot" in leader.read_log(),
                   what="the deferred snapshot offered once applied")
        self.assertIsNone(leader.proc.poll())

    def test_follower_killed_during_install_restarts_and_completes(self):
        # A slow stream (64 KiB/s) of a ~1 MB snapshot leaves time to kill the receiver.
        self.start(extra=["--snapshot-rate-bytes-per-sec=65536", "--snapshot-chunk-bytes=16384"])
        value = lambda k: "v" * 300
        keys = self.write_while_follower_down([f"i{i}" for i in range(3000)], value)
        self.follower.start()
        received = os.path.join(self.follower.data_dir, "snapshots", "received")
        wait_until(lambda: any(os.path.getsize(p) > 0
                               for p in glob.glob(os.path.join(received, "*.part"))),
                   timeout_s=30, what="a partly received snapshot")
        self.follower.kill()
        self.follower.start()
        wait_until(lambda: "installing snapshot" in self.follower.read_log(), timeout_s=60,
                   what="the snapshot to be installed after the restart")
        self.assertIn("resuming", self.follower.read_log())
        wait_for_leader(self.cluster.nodes)
        check_keys(self.follower.port, keys, value)

    def test_received_snapshots_and_orphaned_part_files_are_pruned(self):
        # Issue 9: snapshots/received and .part files of broken-off transfers grew forever.
        self.start()
        value = lambda k: f"p-{k}"
        keys = self.write_while_follower_down([f"p{i}" for i in range(3000)], value)
        received = os.path.join(self.follower.data_dir, "snapshots", "received")
        os.makedirs(received, exist_ok=True)
        orphan = os.path.join(received, "snap-00000000000000000007-1.db.4096.part")
        with open(orphan, "wb") as f:
            f.write(b"x" * 100)  # a transfer of an old snapshot, broken off long ago
        self.follower.start()
        wait_until(lambda: "installing snapshot" in self.follower.read_log(), timeout_s=60,
                   what="the snapshot to be installed")
        check_keys(self.follower.port, keys, value)
        self.assertFalse(os.path.exists(orphan), "the orphaned .part file is still there")
        # The follower cuts snapshots of its own (every 500 entries); the received one is
        # pruned once three newer ones exist (--snapshots-retained default 3).
        # Four rounds of 500 (one snapshot's worth each), each awaited: written at once, a
        # pipelined burst may all land within one backup interval and make one snapshot.
        more = []
        for r in range(4):
            cut = snapshots_cut(self.follower)
            more += write_keys(self.leader.port, [f"q{r}-{i}" for i in range(500)], value)
            wait_until(lambda: snapshots_cut(self.follower) > cut, timeout_s=30,
                       what=f"a snapshot of the follower's own in round {r}")
        own = os.path.join(self.follower.data_dir, "snapshots")
        wait_until(lambda: not glob.glob(os.path.join(received, "snap-*")), timeout_s=60,
                   what="the received snapshot to be pruned")
        self.assertLessEqual(len(glob.glob(os.path.join(own, "snap-*.db"))), 3)
        check_keys(self.follower.port, more, value)

    def test_follower_killed_at_each_step_of_an_install_starts_and_rejoins(self):
        # Issue 9: a kill between the store taking the snapshot and the log recording its
        # commit left a node that refused to start. RAFTKV_CRASH_AFTER_INSTALL_STEP makes kvd
        # end itself (exit 86, as a kill) right after the named step (raft_loop.cc).
        self.start()
        steps = ["install: log restarted, commit durable", "install: store installed",
                 "install: backup reset"]
        for n, step in enumerate(steps):
            with self.subTest(step=step):
                value = lambda k: f"{n}-{k}"
                keys = self.write_while_follower_down([f"c{n}-{i}" for i in range(1500)], value)
                os.environ["RAFTKV_CRASH_AFTER_INSTALL_STEP"] = step
                try:
                    self.follower.start(wait=False)
                finally:
                    del os.environ["RAFTKV_CRASH_AFTER_INSTALL_STEP"]
                self.assertEqual(self.follower.proc.wait(timeout=60), 86, self.follower.read_log())
                self.follower.log.close()
                self.follower.start()
                wait_for_leader(self.cluster.nodes)
                check_keys(self.follower.port, keys, value)
                self.assertEqual(TextClient(self.leader.port).cmd(f"SET after-{n} 1"), "OK")
                wait_until(lambda: TextClient(self.follower.port).cmd(f"GET after-{n}") == "1",
                           what="the follower to apply a write after the snapshot")

    def test_restore_a_new_cluster_from_one_backup_file(self):
        self.start()
        value = lambda k: f"r-{k}"
        keys = write_keys(self.leader.port, [f"r{i}" for i in range(700)], value)
        backup = os.path.join(self.leader.data_dir, "backup.db")
        wait_until(lambda: backup_count(backup) == len(keys), what="the backup")
        saved = os.path.join(self.cluster.tmp.name, "saved.db")
        con = sqlite3.connect(backup)  # an operator's copy: sqlite3's online backup
        dst = sqlite3.connect(saved)
        con.backup(dst)
        dst.close()
        con.close()
        for n in self.cluster.nodes:  # every node lost
            n.kill()
            shutil.rmtree(n.data_dir)
        for n in self.cluster.nodes:
            n.extra_args = n.extra_args + ["--restore-from", saved]
            n.start()
        wait_for_leader(self.cluster.nodes)
        for n in self.cluster.nodes:
            check_keys(n.port, keys, value)
        self.assertEqual(TextClient(self.cluster.nodes[0].port).cmd("SET after-restore 1"), "OK")

    def test_restore_refuses_bad_files_and_changes_nothing(self):
        self.start()
        tmp = self.cluster.tmp.name
        bad = {"truncated": None, "corrupt": None, "foreign": None}
        write_keys(self.leader.port, [f"z{i}" for i in range(200)], lambda k: "z")
        backup = os.path.join(self.leader.data_dir, "backup.db")
        wait_until(lambda: backup_count(backup) == 200, what="the backup")
        good = os.path.join(tmp, "good.db")
        con, dst = sqlite3.connect(backup), sqlite3.connect(good)
        con.backup(dst)
        dst.close()
        con.close()
        data = open(good, "rb").read()
        bad["truncated"] = data[: len(data) // 2]
        corrupt = bytearray(data)
        # Bytes that hold rows (the middle of the file may be free space of a page, which no
        # check can see: the schema's pages moved when the sessions table grew an index).
        start = data.find(b"z150")
        self.assertGreater(start, 0)
        for i in range(start, start + 16):
            corrupt[i] ^= 0xFF
        bad["corrupt"] = bytes(corrupt)
        foreign = os.path.join(tmp, "foreign.db")
        c = sqlite3.connect(foreign)
        c.execute("create table t (x)")
        c.commit()
        c.close()
        bad["foreign"] = open(foreign, "rb").read()
        for name, content in bad.items():
            path = os.path.join(tmp, f"{name}.db")
            with open(path, "wb") as f:
                f.write(content)
            data_dir = os.path.join(tmp, f"restore-{name}")
            code, out, err = run([KVD, "--data-dir", data_dir, "--restore-from", path])
            self.assertNotEqual(code, 0, f"{name}: accepted")
            self.assertIn(path, err, f"{name}: the error should name the file: {err}")
            self.assertFalse(os.path.exists(os.path.join(data_dir, "db")), name)


if __name__ == "__main__":
    unittest.main()
