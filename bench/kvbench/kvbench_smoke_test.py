"""kvbench against a real single-node kvd on 127.0.0.1: both backends, closed and open loop,
report a non-zero count of successful ops and ordered percentiles; with no server listening
it exits 1. A smoke test of the tool, not a timing assertion: no figure is compared with a
threshold other than zero and ordering.
"""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../tests/integration"))
import harness  # noqa: E402

KVBENCH = os.path.join(harness.BIN, "kvbench")


def kvbench(*args, timeout_s=60):
    proc = subprocess.run([KVBENCH, *args], capture_output=True, text=True, timeout=timeout_s)
    return proc.returncode, proc.stdout, proc.stderr


class KvbenchSmokeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = harness.TempCluster(1)
        try:
            cls.node = cls.cluster.nodes[0].start()
            harness.wait_for_leader(cls.cluster.nodes)
        except BaseException:
            cls.cluster.__exit__(None, None, None)  # tearDownClass does not run after this
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.__exit__(None, None, None)

    def run_json(self, *args):
        code, out, err = kvbench("--duration", "1", "--format", "json", "--keys", "100",
                                 "--value-bytes", "64", *args)
        self.assertEqual(code, 0, f"kvbench {' '.join(args)} failed: {err}\n{out}")
        return json.loads(out)

    def assert_sane(self, r, reads, writes):
        self.assertGreater(r["ok"], 0, r)
        self.assertEqual(r["errors"], 0, r)
        self.assertEqual(r["timeouts"], 0, r)
        self.assertGreater(r["throughput"], 0, r)
        lat = r["latency_us"]["all"]
        self.assertEqual(lat["count"], r["ok"])
        order = [lat[k] for k in ("min", "p50", "p90", "p99", "p999", "max")]
        self.assertGreater(order[0], 0, lat)
        self.assertEqual(order, sorted(order), lat)
        self.assertLessEqual(lat["min"], lat["mean"])
        self.assertLessEqual(lat["mean"], lat["max"])
        self.assertEqual(r["latency_us"]["read"]["count"] > 0, reads, r)
        self.assertEqual(r["latency_us"]["write"]["count"] > 0, writes, r)
        self.assertEqual(r["latency_us"]["read"]["count"] + r["latency_us"]["write"]["count"],
                         r["ok"])

    def test_etcd_closed_loop_mix(self):
        r = self.run_json("--backend", "etcd", "--endpoints", f"127.0.0.1:{self.node.grpc_port}",
                          "--clients", "8", "--conns", "2", "--read-ratio", "0.5")
        self.assertEqual(r["mode"], "closed")
        self.assert_sane(r, reads=True, writes=True)

    def test_etcd_open_loop_writes(self):
        r = self.run_json("--backend", "etcd", "--endpoints", f"127.0.0.1:{self.node.grpc_port}",
                          "--clients", "16", "--rate", "200")
        self.assertEqual(r["mode"], "open")
        self.assert_sane(r, reads=False, writes=True)

    def test_resp_pipelined_mix(self):
        r = self.run_json("--backend", "resp", "--endpoints", f"127.0.0.1:{self.node.port}",
                          "--clients", "4", "--conns", "2", "--pipeline", "8",
                          "--read-ratio", "0.5", "--preload")
        self.assert_sane(r, reads=True, writes=True)

    def test_resp_open_loop_reads(self):
        r = self.run_json("--backend", "resp", "--endpoints", f"127.0.0.1:{self.node.port}",
                          "--clients", "8", "--conns", "4", "--rate", "500", "--read-ratio", "1")
        self.assert_sane(r, reads=True, writes=False)

    def test_op_count_bounds_the_run(self):
        code, out, err = kvbench("--backend", "resp", "--endpoints", f"127.0.0.1:{self.node.port}",
                                 "--ops", "50", "--duration", "60", "--format", "json")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["ok"], 50)

    def test_text_and_tsv_output(self):
        code, out, err = kvbench("--backend", "etcd", "--endpoints",
                                 f"127.0.0.1:{self.node.grpc_port}", "--duration", "0.3")
        self.assertEqual(code, 0, err)
        self.assertIn("ops/s", out)
        self.assertIn("p99.9", out)
        code, out, err = kvbench("--backend", "resp", "--endpoints", f"127.0.0.1:{self.node.port}",
                                 "--duration", "0.3", "--format", "tsv", "--label", "x")
        self.assertEqual(code, 0, err)
        header, row = out.strip().split("\n")
        fields = dict(zip(header.split("\t"), row.split("\t")))
        self.assertEqual(fields["label"], "x")
        self.assertGreater(int(fields["ok"]), 0)

    def test_no_server_fails(self):
        port, = harness.free_ports(1)
        for backend in ("etcd", "resp"):
            code, out, err = kvbench("--backend", backend, "--endpoints", f"127.0.0.1:{port}",
                                     "--duration", "1", "--connect-timeout-ms", "1000")
            self.assertEqual(code, 1, f"{backend}: {out} {err}")
            self.assertIn("connect", err)

    def test_bad_flags_exit_2(self):
        code, _, _ = kvbench("--backend", "memcached")
        self.assertEqual(code, 2)
        code, out, _ = kvbench("--help")
        self.assertEqual(code, 0)
        self.assertIn("coordinated omission", out)


if __name__ == "__main__":
    unittest.main()
