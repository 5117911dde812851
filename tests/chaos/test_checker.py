#!/usr/bin/env python3
"""Unit tests of the chaos checkers (stdlib unittest), plus the shared test vectors.

  python3 tests/chaos/test_checker.py            # everything
  python3 tests/chaos/test_checker.py -k Vectors # only the vectors

The vectors live in ../shared/test-vectors beside the repository (RAFTKV_TEST_VECTORS
overrides); their absence is a failure, not a skip.
"""
import math
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checks  # noqa: E402
import clients  # noqa: E402
import lincheck as L  # noqa: E402

INF = math.inf
VECTORS = os.environ.get("RAFTKV_TEST_VECTORS",
                         os.path.join(HERE, "..", "..", "..", "shared", "test-vectors"))
PER_HISTORY_BUDGET_S = 60.0


def put(call, ret, v, unknown=False):
    return L.Op(call, INF if unknown else ret, ("put", v), L.UNKNOWN_OUTPUT if unknown else None)


def get(call, ret, v):
    return L.Op(call, ret, ("get",), v)


def dele(call, ret, existed, unknown=False):
    return L.Op(call, INF if unknown else ret, ("del",),
                L.UNKNOWN_OUTPUT if unknown else existed)


def verdict(ops, budget=10.0):
    return L.check_ops(L.KV_MODEL, ops, budget).verdict


class KvModelHistories(unittest.TestCase):
    """Hand-made single-key histories for raftkv's model (times in arbitrary units)."""

    # --- linearizable ------------------------------------------------------------------
    def test_empty_and_initial_absent(self):
        self.assertEqual(verdict([]), L.OK)
        self.assertEqual(verdict([get(0, 1, None)]), L.OK)

    def test_sequential_put_get_delete(self):
        self.assertEqual(verdict([put(0, 1, "a"), get(2, 3, "a"), dele(4, 5, True),
                                  get(6, 7, None), dele(8, 9, False)]), L.OK)

    def test_concurrent_read_may_see_either(self):
        for seen in ("a", "b"):
            self.assertEqual(verdict([put(0, 1, "a"), put(2, 10, "b"), get(3, 4, seen)]), L.OK)

    def test_reads_in_real_time_order_may_flip_once(self):
        # a write concurrent with two reads: old then new is fine ...
        self.assertEqual(verdict([put(0, 1, "a"), put(2, 20, "b"), get(3, 4, "a"),
                                  get(5, 6, "b")]), L.OK)

    def test_unknown_write_may_take_effect_late_or_never(self):
        base = [put(0, 1, "a"), put(2, None, "x", unknown=True)]
        self.assertEqual(verdict(base + [get(3, 4, "a")]), L.OK)      # not yet (or never)
        self.assertEqual(verdict(base + [get(50, 51, "x")]), L.OK)    # much later
        self.assertEqual(verdict(base + [get(50, 51, "a")]), L.OK)    # never

    def test_porcupine_register_example(self):
        # Porcupine's README/test example, as a key that starts at "0".
        ops = [put(-1, -0.5, "0"), put(0, 100, "100"), get(25, 75, "100"), get(30, 60, "0")]
        self.assertEqual(verdict(ops), L.OK)

    # --- known-bad: each must be rejected ----------------------------------------------
    def test_stale_read_is_rejected(self):
        ops = [put(0, 1, "a"), put(2, 3, "b"), get(4, 5, "a")]
        self.assertEqual(verdict(ops), L.ILLEGAL)

    def test_lost_write_is_rejected(self):
        ops = [put(0, 1, "a"), get(2, 3, None)]
        self.assertEqual(verdict(ops), L.ILLEGAL)

    def test_resurrected_delete_is_rejected(self):
        ops = [put(0, 1, "a"), dele(2, 3, True), get(4, 5, "a")]
        self.assertEqual(verdict(ops), L.ILLEGAL)

    def test_value_never_written_is_rejected(self):
        self.assertEqual(verdict([put(0, 1, "a"), get(2, 3, "zzz")]), L.ILLEGAL)
        self.assertEqual(verdict([get(0, 1, "zzz")]), L.ILLEGAL)

    def test_porcupine_register_bad_example(self):
        ops = [put(-1, -0.5, "0"), put(0, 100, "200"), get(10, 30, "200"), get(40, 90, "0")]
        self.assertEqual(verdict(ops), L.ILLEGAL)

    def test_unknown_write_cannot_act_before_its_call(self):
        ops = [put(0, 1, "a"), get(2, 3, "x"), put(4, None, "x", unknown=True)]
        self.assertEqual(verdict(ops), L.ILLEGAL)

    def test_delete_must_report_existence_truthfully(self):
        self.assertEqual(verdict([put(0, 1, "a"), dele(2, 3, False)]), L.ILLEGAL)
        self.assertEqual(verdict([dele(0, 1, True)]), L.ILLEGAL)

    def test_reads_cannot_go_back_in_time(self):
        ops = [put(0, 1, "a"), put(2, 20, "b"), get(3, 4, "b"), get(5, 6, "a")]
        self.assertEqual(verdict(ops), L.ILLEGAL)

    # --- the search's limits -----------------------------------------------------------
    def test_over_budget_is_unknown_never_ok(self):
        # Many concurrent unknown writes and reads that rule most orders out: hard.
        ops = [put(0, None, f"w{i}", unknown=True) for i in range(40)]
        ops += [get(10 + i, 10.5 + i, f"w{(i * 7) % 40}") for i in range(40)]
        ops += [get(100, 101, "never")]
        r = L.check_ops(L.KV_MODEL, ops, budget_s=0.05)
        self.assertEqual(r.verdict, L.UNKNOWN)
        ov, _ = L.check_partitioned(L.KV_MODEL, {"k": ops, "j": [get(0, 1, None)]}, 0.05)
        self.assertEqual(ov, L.UNKNOWN)

    def test_state_cap_is_unknown(self):
        ops = [put(0, None, f"w{i}", unknown=True) for i in range(30)]
        ops += [get(10 + i, 10.5 + i, f"w{(i * 7) % 30}") for i in range(30)]
        ops += [get(100, 101, "never")]
        self.assertEqual(L.check_ops(L.KV_MODEL, ops, 60, max_states=1000).verdict, L.UNKNOWN)

    def test_failing_window_names_the_stuck_operation(self):
        ops = [put(0, 1, "a"), put(2, 3, "b"), get(4, 5, "a")]
        for i, op in enumerate(ops):
            op.meta = f"op{i}"
        r = L.check_ops(L.KV_MODEL, ops)
        text = L.failing_window(L.KV_MODEL, r, "k", time_unit=1)
        self.assertIn("not linearizable", text)
        stuck_line = [ln for ln in text.splitlines() if ln.startswith(">>")]
        self.assertEqual(len(stuck_line), 1)
        self.assertIn("get() -> 'a'", stuck_line[0])

    def test_partitioned_reports_illegal_if_any_key_is(self):
        ov, res = L.check_partitioned(L.KV_MODEL, {
            "good": [put(0, 1, "a"), get(2, 3, "a")],
            "bad": [put(0, 1, "a"), get(2, 3, None)]})
        self.assertEqual(ov, L.ILLEGAL)
        self.assertEqual(res["good"].verdict, L.OK)
        self.assertEqual(res["bad"].verdict, L.ILLEGAL)


def rec(f, key, invoke, complete, outcome, value=None, result=None, keys=None):
    r = {"type": "op", "f": f, "invoke": invoke, "complete": complete, "outcome": outcome,
         "client": 0, "proto": "text", "node": 0}
    if key is not None:
        r["key"] = key
    if value is not None:
        r["value"] = value
    if keys is not None:
        r["keys"] = keys
    r["result"] = result
    return r


class HistoryConversion(unittest.TestCase):
    def test_outcomes(self):
        ops = [rec("put", "k", 0, 1, "ok", "a"),
               rec("put", "k", 2, 3, "failed", "b"),        # dropped: never happened
               rec("put", "k", 4, 5, "unknown", "c"),       # may happen any time after 4
               rec("get", "k", 6, 7, "unknown"),            # constrains nothing: dropped
               rec("del", "k", 8, 9, "ok", result=True),
               rec("mget", None, 10, 11, "ok", keys=["k", "j"], result=[None, None])]
        by = L.kv_ops_by_key(ops)
        self.assertEqual(sorted(by), ["j", "k"])
        k = by["k"]
        self.assertEqual([o.input[0] for o in k], ["put", "put", "del", "get"])
        self.assertEqual(k[1].ret, INF)
        self.assertIs(k[1].output, L.UNKNOWN_OUTPUT)
        self.assertEqual(L.check_ops(L.KV_MODEL, k).verdict, L.OK)

    def test_a_failed_write_that_shows_up_is_a_violation(self):
        ops = [rec("put", "k", 0, 1, "failed", "a"), rec("get", "k", 2, 3, "ok", result="a")]
        self.assertEqual(L.check_ops(L.KV_MODEL, L.kv_ops_by_key(ops)["k"]).verdict, L.ILLEGAL)


class Durability(unittest.TestCase):
    def test_latest_acknowledged_write_passes(self):
        ops = [rec("put", "k", 0, 1, "ok", "a"), rec("put", "k", 2, 3, "ok", "b")]
        d = checks.check_durability(ops, {"k": {0: "b", 1: "b"}})
        self.assertTrue(d["passed"], d)

    def test_later_unknown_write_passes(self):
        ops = [rec("put", "k", 0, 1, "ok", "a"), rec("put", "k", 2, 3, "unknown", "x")]
        for v in ("a", "x"):
            self.assertTrue(checks.check_durability(ops, {"k": {0: v}})["passed"])

    def test_concurrent_acknowledged_writes_either_may_win(self):
        ops = [rec("put", "k", 0, 5, "ok", "a"), rec("put", "k", 1, 6, "ok", "b")]
        for v in ("a", "b"):
            self.assertTrue(checks.check_durability(ops, {"k": {0: v}})["passed"])

    def test_lost_write_fails(self):
        ops = [rec("put", "k", 0, 1, "ok", "a")]
        d = checks.check_durability(ops, {"k": {0: "a", 1: None}})
        self.assertFalse(d["passed"])
        self.assertEqual(d["lost_writes"], 1)
        self.assertEqual(d["problems"][0]["kind"], "lost write")
        self.assertEqual(d["problems"][0]["node"], 1)

    def test_older_value_fails(self):
        ops = [rec("put", "k", 0, 1, "ok", "a"), rec("put", "k", 2, 3, "ok", "b")]
        d = checks.check_durability(ops, {"k": {0: "a"}})
        self.assertFalse(d["passed"])
        self.assertEqual(d["problems"][0]["kind"], "lost write (older value returned)")

    def test_resurrected_delete_fails(self):
        ops = [rec("put", "k", 0, 1, "ok", "a"), rec("del", "k", 2, 3, "ok", result=True)]
        d = checks.check_durability(ops, {"k": {0: "a"}})
        self.assertEqual(d["problems"][0]["kind"], "deleted key resurrected")
        self.assertTrue(checks.check_durability(ops, {"k": {0: None}})["passed"])

    def test_value_never_written_fails(self):
        d = checks.check_durability([rec("put", "k", 0, 1, "ok", "a")], {"k": {0: "zz"}})
        self.assertEqual(d["problems"][0]["kind"], "value never written")

    def test_failed_write_applied_fails(self):
        ops = [rec("put", "k", 0, 1, "ok", "a"), rec("put", "k", 2, 3, "failed", "b")]
        d = checks.check_durability(ops, {"k": {0: "b"}})
        self.assertEqual(d["problems"][0]["kind"], "failed write applied")


class Convergence(unittest.TestCase):
    def backup(self, index, rows, checksum=7):
        return {"applied_index": index, "kv_checksum": checksum, "rows": rows}

    def test_same_state_passes(self):
        reads = {"k": {0: "a", 1: "a"}, "j": {0: None, 1: None}}
        c = checks.check_convergence(reads, {0: self.backup(9, {"k": "a"}),
                                             1: self.backup(9, {"k": "a"})})
        self.assertTrue(c["passed"], c)

    def test_divergent_reads_fail(self):
        c = checks.check_convergence({"k": {0: "a", 1: "b"}}, {})
        self.assertFalse(c["passed"])

    def test_divergent_backups_fail(self):
        reads = {"k": {0: "a", 1: "a"}}
        c = checks.check_convergence(reads, {0: self.backup(9, {"k": "a"}, 1),
                                             1: self.backup(9, {"k": "b"}, 2)})
        self.assertFalse(c["passed"])
        self.assertTrue(any("different states" in p for p in c["problems"]))

    def test_backup_disagreeing_with_reads_fails(self):
        c = checks.check_convergence({"k": {0: "a"}}, {0: self.backup(9, {"k": "old"})})
        self.assertFalse(c["passed"])


class Availability(unittest.TestCase):
    def test_fault_to_next_write(self):
        s = 1_000_000_000
        ops = [rec("put", "k", 0, 1, "ok", "a"),
               rec("put", "k", 2 * s, 7 * s, "unknown", "b"),
               rec("put", "k", 3 * s, 5 * s, "ok", "c")]
        for r in ops:
            r["node"] = 1
        faults = [{"fault_id": 1, "kind": "kill-leader", "phase": "start", "t": 2 * s,
                   "targets": [1]},
                  {"fault_id": 1, "kind": "kill-leader", "phase": "end", "t": 4 * s,
                   "targets": [1]}]
        per, failover = checks.availability(ops, faults)
        self.assertAlmostEqual(per["kill-leader"]["to_next_write_p50"], 3.0)
        self.assertEqual(per["kill-leader"]["unknown"], 1)
        self.assertEqual(per["kill-leader"]["ok"], 1)
        self.assertEqual(failover["n"], 1)


class EndToEndEvaluation(unittest.TestCase):
    """chaos.evaluate() on saved run directories: the verdict and exit code of a run."""

    def write_run(self, d, ops, reads, backups, recovered=True):
        import json
        with open(os.path.join(d, "history.jsonl"), "w") as f:
            f.write(json.dumps({"type": "meta", "seed": 7, "nodes": 2, "network": "netns",
                                "faults": ["kill"], "minutes": 1, "error_mode": "safe"}) + "\n")
            for i, r in enumerate(ops):
                r = dict(r, id=i)
                f.write(json.dumps(r) + "\n")
            f.write(json.dumps({"type": "final", "reads": reads, "backups": backups,
                                "recovered": recovered}) + "\n")

    def evaluate(self, ops, reads, backups, **kw):
        import contextlib
        import io
        import tempfile
        import chaos
        with tempfile.TemporaryDirectory() as d:
            self.write_run(d, ops, reads, backups)
            with contextlib.redirect_stdout(io.StringIO()) as out:
                code = chaos.evaluate(d, **kw)
            return code, out.getvalue()

    def good(self):
        ops = [rec("put", "k", 0, 10, "ok", "a"), rec("get", "k", 20, 30, "ok", result="a")]
        b = {"applied_index": 5, "kv_checksum": 1, "rows": {"k": "a"}}
        return ops, {"k": {"0": "a", "1": "a"}}, {"0": b, "1": dict(b)}

    def test_a_clean_run_passes(self):
        code, out = self.evaluate(*self.good())
        self.assertEqual(code, 0, out)
        self.assertIn("VERDICT: PASS", out)

    def test_a_lost_write_fails_with_the_seed(self):
        ops, reads, backups = self.good()
        reads = {"k": {"0": "a", "1": None}}
        code, out = self.evaluate(ops, reads, backups)
        self.assertEqual(code, 1)
        self.assertIn("VERDICT: FAIL (seed 7)", out)
        self.assertIn("lost write", out)

    def test_a_stale_read_fails_with_a_window(self):
        ops, reads, backups = self.good()
        ops += [rec("put", "k", 40, 50, "ok", "b"), rec("get", "k", 60, 70, "ok", result="a")]
        reads = {"k": {"0": "b", "1": "b"}}
        for b in backups.values():
            b["rows"] = {"k": "b"}
        code, out = self.evaluate(ops, reads, backups)
        self.assertEqual(code, 1)
        self.assertIn("not linearizable", out)
        self.assertIn(">>", out)

    def test_an_over_budget_key_is_inconclusive(self):
        ops, reads, backups = self.good()
        ops += [rec("put", "h", 100, 101, "unknown", f"w{i}") for i in range(40)]
        ops += [rec("get", "h", 110 + i, 110.5 + i, "ok", result=f"w{(i * 7) % 40}")
                for i in range(40)]
        ops += [rec("get", "h", 200, 201, "ok", result="never")]
        reads["h"] = {"0": "w1", "1": "w1"}
        for b in backups.values():
            b["rows"] = {"k": "a", "h": "w1"}
        code, out = self.evaluate(ops, reads, backups, budget_s=0.05, total_budget_s=1)
        self.assertEqual(code, 3, out)
        self.assertIn("INCONCLUSIVE", out)


class ErrorClassification(unittest.TestCase):
    def test_safe_mode(self):
        c = clients.classify_server_error
        self.assertEqual(c("no leader (election in progress)"), "failed")
        self.assertEqual(c("not the leader; the leader is node 2"), "failed")
        self.assertEqual(c("write not answered within 5000 ms (--request-timeout-ms); "
                           "outcome unknown"), "unknown")
        self.assertEqual(c("node is shutting down"), "unknown")  # issue 10: may commit
        self.assertEqual(c("forwarding to the leader at 10.0.0.1:6000: Socket closed",
                           "UNAVAILABLE"), "unknown")
        self.assertEqual(c("forwarding to the leader at 10.0.0.1:6000: no leader (election "
                           "in progress)", "UNAVAILABLE"), "failed")
        self.assertEqual(c("something new"), "unknown")

    def test_strict_mode_trusts_the_code(self):
        c = clients.classify_server_error
        self.assertEqual(c("node is shutting down", None, "strict"), "failed")
        self.assertEqual(c("x", "UNAVAILABLE", "strict"), "failed")
        self.assertEqual(c("x", "DEADLINE_EXCEEDED", "strict"), "unknown")
        self.assertEqual(c("write ...; outcome unknown", None, "strict"), "unknown")

    def test_kind_words_of_text_and_resp(self):
        # Issue 10: "ERR UNAVAILABLE ..." is not applied, "ERR UNKNOWN ..." outcome unknown.
        c = clients.classify_server_error
        for mode in clients.ERROR_MODES:
            self.assertEqual(c("UNAVAILABLE no leader (election in progress)", None, mode),
                             "failed")
            self.assertEqual(c("UNKNOWN outcome unknown: node is shutting down after the "
                               "write was proposed", None, mode), "unknown")
            self.assertEqual(c("UNKNOWN anything", None, mode), "unknown")
            self.assertEqual(c("x", "UNKNOWN", mode), "unknown")
            self.assertEqual(c("x", "DEADLINE_EXCEEDED", mode), "unknown")
        self.assertEqual(c("UNAVAILABLE not applied: node is shutting down"), "failed")
        self.assertEqual(c("UNAVAILABLE something new", None, "strict"), "failed")
        self.assertEqual(c("UNAVAILABLE something new"), "unknown")


class MislabelledWrites(unittest.TestCase):
    def test_unavailable_write_that_was_read_is_reported(self):
        w = rec("put", "k", 0, 1, "unknown", "a")
        w.update(proto="etcd", error="UNAVAILABLE: forwarding to the leader at 10.0.0.1:6000: "
                                     "Socket closed")
        t = rec("put", "k", 0, 1, "unknown", "b")
        t["error"] = "forwarding to the leader at 10.0.0.1:6000: Deadline Exceeded"
        u = rec("put", "k", 0, 1, "unknown", "c")
        u["error"] = "write not answered within 5000 ms (--request-timeout-ms); outcome unknown"
        n = rec("put", "k", 0, 1, "failed", "d")
        n.update(proto="etcd", error="UNAVAILABLE: failed to connect to all addresses")
        x = rec("put", "k", 0, 1, "unknown", "e")  # our own connection broke: no claim
        x.update(proto="etcd", error="UNAVAILABLE: recvmsg:Connection reset by peer")
        reads = [rec("get", "k", 5, 6, "ok", result=v) for v in "abcde"]
        ml = checks.mislabelled_writes([w, t, u, n, x] + reads)
        self.assertEqual(sorted(m["value"] for m in ml), ["a", "b"])

    def test_unread_write_is_not_reported(self):
        w = rec("put", "k", 0, 1, "unknown", "a")
        w["error"] = "node is shutting down"
        self.assertEqual(checks.mislabelled_writes([w]), [])


class Protobuf(unittest.TestCase):
    def test_round_trip(self):
        msg = clients.pb_bytes(1, "key") + clients.pb_uint(4, 300) + clients.pb_bytes(2, b"")
        d = clients.pb_decode(msg)
        self.assertEqual(d[1], [b"key"])
        self.assertEqual(d[4], [300])
        self.assertEqual(d[2], [b""])


class Vectors(unittest.TestCase):
    """Every verdict of ../shared/test-vectors, each history within a bounded time."""

    def setUp(self):
        if not os.path.isdir(VECTORS):
            self.fail(f"test vectors not found at {VECTORS} (set RAFTKV_TEST_VECTORS)")

    def test_jepsen_etcd_registers(self):
        d = os.path.join(VECTORS, "jepsen-etcd")
        verdicts = {}
        with open(os.path.join(d, "verdicts.tsv")) as f:
            for line in f:
                if line.strip():
                    name, v = line.split()
                    verdicts[name] = v
        judged = {k: v for k, v in verdicts.items() if v != "unknown"}
        self.assertEqual(len(judged), 102)
        want = {"linearizable": L.OK, "not-linearizable": L.ILLEGAL}
        wrong, slowest = [], (0.0, "")
        for name, v in sorted(judged.items()):
            ops = L.parse_jepsen_etcd(os.path.join(d, name))
            self.assertTrue(ops, name)
            r = L.check_ops(L.ETCD_MODEL, ops, PER_HISTORY_BUDGET_S)
            slowest = max(slowest, (r.seconds, name))
            if r.verdict != want[v]:
                wrong.append(f"{name}: expected {v}, got {r.verdict}")
        self.assertEqual(wrong, [])
        print(f"\n  jepsen-etcd: 102 verdicts reproduced; slowest {slowest[1]} "
              f"{slowest[0]:.2f}s", file=sys.stderr)

    def test_kv_histories(self):
        d = os.path.join(VECTORS, "kv")
        names = sorted(n for n in os.listdir(d) if n.endswith(".txt"))
        self.assertEqual(len(names), 6)
        for name in names:
            t = time.monotonic()
            by_key = L.parse_kv_edn(os.path.join(d, name))
            ov, _ = L.check_partitioned(L.APPEND_MODEL, by_key, PER_HISTORY_BUDGET_S,
                                        stop_on_illegal=True)
            want = L.OK if name.endswith("-ok.txt") else L.ILLEGAL
            self.assertEqual(ov, want, name)
            self.assertLess(time.monotonic() - t, PER_HISTORY_BUDGET_S, name)


if __name__ == "__main__":
    prog = unittest.main(verbosity=1, exit=False)
    r = prog.result
    bad = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
    print(f"chaos-checker: {r.testsRun - bad - len(r.skipped)} passed, {bad} failed")
    sys.exit(0 if r.wasSuccessful() else 1)
