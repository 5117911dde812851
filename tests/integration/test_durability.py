"""Lost data dirs and data dir identity on real kvd processes (issue 9): a node whose data dir
is lost must not help elect a leader that lacks an acknowledged write, and a node refuses a
data dir that belongs to another node or another cluster."""
import os
import shutil
import subprocess
import time
import unittest

from harness import KVD, TempCluster, TextClient, kvctl_status, wait_for_leader, wait_until
from test_cluster import FAST

# An election timeout with FAST is 0.5-1 s; a stale leader would be elected well within this.
ELECTION_WINDOW_S = 4.0


def get(port, key):
    """GET over a fresh connection; 'ERR ...' when the node cannot serve it."""
    try:
        c = TextClient(port, timeout_s=5)
        reply = c.cmd(f"GET {key}")
        c.close()
        return reply
    except OSError as e:
        return f"ERR connection: {e}"


def status_errors(node):
    st = kvctl_status([node.grpc_port])
    return st[0].get("alarms", []) if st and "error" not in st[0] else []


class LostDiskTest(unittest.TestCase):
    def test_node_that_lost_its_data_dir_does_not_help_lose_an_acknowledged_write(self):
        with TempCluster(3, FAST) as cluster:
            for n in cluster.nodes:
                n.start(wait=False)
            leader = wait_for_leader(cluster.nodes)
            b, c = [n for n in cluster.nodes if n is not leader]
            # 1. B is down. 2. W is acknowledged (committed on the leader and C).
            b.kill()
            self.assertEqual(TextClient(leader.port).cmd("SET w acked"), "OK")
            # 3. The leader and C are killed; C's whole data dir is lost.
            leader.kill()
            c.kill()
            shutil.rmtree(c.data_dir)
            # 4. B and C start. C must not vote: no leader can be elected without W.
            b.start()
            c.start()
            wait_until(lambda: any("lost its data" in e for e in status_errors(c)),
                       what="C to report that it lost its data and does not vote")
            answers = []
            deadline = time.monotonic() + ELECTION_WINDOW_S
            while time.monotonic() < deadline:  # sampling a window, not synchronisation
                for n in (b, c):
                    answers.append(get(n.port, "w"))
            self.assertNotIn("KEY NOT FOUND", answers)
            self.assertTrue(all(a == "acked" or a.startswith("ERR") for a in answers), answers)
            errors = [a for a in answers if a.startswith("ERR")]
            self.assertTrue(errors, "expected B and C to refuse reads without a quorum")
            # C's refusal says why.
            self.assertIn("this node lost its data", get(c.port, "w"))
            # 5. The old leader is back: every node serves W.
            leader.start()
            wait_for_leader(cluster.nodes)
            for n in cluster.nodes:
                self.assertEqual(get(n.port, "w"), "acked", f"node {n.id}")
            wait_until(lambda: not status_errors(c), what="C to be a voter again")
            # And the recovered node counts: with B down, the leader and C still commit.
            b.kill()
            live = [n for n in cluster.nodes if n is not b]
            writer = wait_for_leader(live)
            self.assertEqual(TextClient(writer.port).cmd("SET after yes"), "OK")
            self.assertEqual(get(c.port, "after"), "yes")


class IdentityTest(unittest.TestCase):
    def run_kvd(self, node, *extra):
        return subprocess.run(
            [KVD, f"--id={node.id}", "--config", node.config_path, "--data-dir", node.data_dir]
            + FAST + list(extra), capture_output=True, text=True, timeout=30)

    def test_refuses_another_nodes_data_dir_and_another_clusters(self):
        with TempCluster(2, FAST) as cluster:
            n0, n1 = cluster.nodes
            n0.start()
            n0.stop()
            # Node 1 pointed at node 0's data dir.
            shutil.rmtree(n1.data_dir, ignore_errors=True)
            shutil.copytree(n0.data_dir, n1.data_dir)
            r = self.run_kvd(n1)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("belongs to node 0", r.stderr)
            self.assertIn("--id=1", r.stderr)
            # Node 0's own data dir, but another cluster token: another cluster.
            r = self.run_kvd(n0, "--cluster-token=other")
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("belongs to cluster", r.stderr)
            self.assertIn("--cluster-token", r.stderr)
            self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
            self.assertTrue(os.path.exists(os.path.join(n0.data_dir, "identity")))

    def test_nodes_of_two_clusters_refuse_each_others_messages(self):
        # Two fresh nodes of one node_config.json, but started with different tokens: they
        # must never form a cluster (each waits for the other to answer), and say why.
        with TempCluster(2, FAST) as cluster:
            n0, n1 = cluster.nodes
            n1.extra_args += ["--cluster-token=other"]
            n0.start(wait=False)
            n1.start(wait=False)
            for n in (n0, n1):
                wait_until(lambda: "refusing peer messages" in n.read_log(),
                           what=f"node {n.id} to refuse the other cluster's messages")
                self.assertIn("--cluster-token", n.read_log())
            st = kvctl_status([n0.grpc_port, n1.grpc_port])
            self.assertEqual({s.get("leader") for s in st}, {None}, st)

    def test_bad_initial_cluster_state_is_a_usage_error(self):
        with TempCluster(1) as cluster:
            r = self.run_kvd(cluster.nodes[0], "--initial-cluster-state=maybe")
            self.assertEqual(r.returncode, 2)
            self.assertIn("--initial-cluster-state=maybe must be one of auto, new, existing",
                          r.stderr)


if __name__ == "__main__":
    unittest.main()
