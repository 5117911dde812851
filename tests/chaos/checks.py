"""The chaos run's verdicts from its history (stdlib only).

- linearizability: per key, lincheck's WGL search over every op (final reads included);
- durability: the final read of every key on every node returns a write that may be the last
  one (the latest acknowledged write, or a write of unknown outcome), never an older one,
  never a deleted value, never a value nobody wrote;
- convergence: every node answers the same final value for every key, and every node's
  SQLite backup (read after a clean stop) holds the same rows and checksum at the same
  applied index, equal to the final reads;
- availability: from each fault to the next acknowledged write (p50/p99/max per kind), and
  ok / failed / unknown counts of the operations started during each kind of fault.
"""
import math
from collections import Counter, defaultdict

import lincheck as L

NS = 1e9
# Faults aimed at the leader: "failover" is measured over these.
LEADER_FAULTS = ("kill-leader", "kill-leader-burst", "pause-leader", "partition-leader",
                 "restart-leader")


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))
    return v[k]


def fmt_s(x):
    return "-" if x is None else f"{x:.2f}s"


# --- linearizability ----------------------------------------------------------------------

def check_linearizability(ops, budget_s=30.0, total_budget_s=120.0, t0=None):
    by_key = L.kv_ops_by_key(ops)
    overall, results = L.check_partitioned(L.KV_MODEL, by_key, budget_s, total_budget_s)
    windows = []
    for key, r in sorted(results.items(), key=lambda kv: str(kv[0])):
        if r.verdict == L.ILLEGAL:
            windows.append(L.failing_window(L.KV_MODEL, r, key, t0=t0))
    unknown_keys = sorted(k for k, r in results.items() if r.verdict == L.UNKNOWN)
    return {
        "verdict": overall,
        "keys": len(results),
        "ops_checked": sum(len(v) for v in by_key.values()),
        "illegal_keys": sorted(k for k, r in results.items() if r.verdict == L.ILLEGAL),
        "inconclusive_keys": unknown_keys,
        "max_key_seconds": max((r.seconds for r in results.values()), default=0.0),
        "windows": windows,
    }


# --- durability ---------------------------------------------------------------------------

def check_durability(ops, final_reads):
    """`ops`: the workload's op records (final reads excluded); `final_reads`: {key: {node:
    value or None}} read after healing. Returns a dict with a list of problems."""
    writes = defaultdict(list)  # key -> [(invoke, complete or inf, kind, value, outcome)]
    ever_put = defaultdict(set)  # key -> values of every put, whatever its outcome
    for r in ops:
        if r["f"] not in ("put", "del"):
            continue
        ever_put_value = r.get("value")
        if r["f"] == "put":
            ever_put[r["key"]].add(ever_put_value)
        if r["outcome"] == "failed":
            continue
        end = r["complete"] if r["outcome"] == "ok" else math.inf
        writes[r["key"]].append((r["invoke"], end, r["f"], r.get("value"), r["outcome"]))
    problems = []
    lost_keys = set()
    for key, by_node in sorted(final_reads.items()):
        ws = writes.get(key, [])
        acked = [w for w in ws if w[4] == "ok"]
        # A write may be the last to take effect unless an acknowledged write began after it
        # ended. Unknown writes (end = inf) always may.
        candidates = [w for w in ws if not any(a[0] > w[1] for a in acked)]
        allowed_values = {w[3] for w in candidates if w[2] == "put"}
        absent_ok = not acked or any(w[2] == "del" for w in candidates)
        latest_acked = [w for w in candidates if w[4] == "ok"]
        for node, value in sorted(by_node.items()):
            if value is None and absent_ok:
                continue
            if value is not None and value in allowed_values:
                continue
            if value is None:
                kind = "lost write"
            elif value not in ever_put[key]:
                kind = "value never written"
            elif not any(w[3] == value for w in ws):
                kind = "failed write applied"
            elif any(w[2] == "del" for w in latest_acked):
                kind = "deleted key resurrected"
            else:
                kind = "lost write (older value returned)"
            if kind.startswith("lost write") or kind == "deleted key resurrected":
                lost_keys.add(key)
            expect = sorted(f"{'del' if w[2] == 'del' else repr(w[3])} ({w[4]})"
                            for w in candidates) or ["absent"]
            problems.append({"key": key, "node": node, "kind": kind, "read": value,
                             "allowed": expect[:8]})
    # lost_writes: keys whose latest acknowledged write (or delete) is gone on some node
    return {"keys": len(final_reads), "problems": problems, "lost_writes": len(lost_keys),
            "lost_keys": sorted(lost_keys), "passed": not problems}


# --- convergence --------------------------------------------------------------------------

def check_convergence(final_reads, backups):
    """`final_reads`: {key: {node: value}}; `backups`: {node: {"applied_index", "kv_checksum",
    "rows": {key: value}} or {"error": ...}}."""
    problems = []
    for key, by_node in sorted(final_reads.items()):
        vals = {json_key(v) for v in by_node.values()}
        if len(vals) > 1:
            problems.append(f"key {key!r}: nodes read different final values: "
                            + ", ".join(f"n{n}={v!r}" for n, v in sorted(by_node.items())))
    ok_backups = {n: b for n, b in backups.items() if "error" not in b}
    for n, b in sorted(backups.items()):
        if "error" in b:
            problems.append(f"node {n}: backup unreadable: {b['error']}")
    by_index = defaultdict(list)
    for n, b in ok_backups.items():
        by_index[b["applied_index"]].append(n)
    for index, nodes in sorted(by_index.items()):
        sums = {ok_backups[n]["kv_checksum"] for n in nodes}
        rows = {json_key(sorted(ok_backups[n]["rows"].items())) for n in nodes}
        if len(sums) > 1 or len(rows) > 1:
            problems.append(f"applied index {index}: nodes {nodes} hold different states "
                            f"(checksums {sorted(sums)})")
    if len(by_index) > 1:
        problems.append("backups stopped at different applied indexes: "
                        + ", ".join(f"n{n}@{b['applied_index']}" for n, b in
                                    sorted(ok_backups.items())))
    # Every backup must hold exactly what the final reads returned (for the keys tested).
    for n, b in sorted(ok_backups.items()):
        diff = []
        for key, by_node in final_reads.items():
            want = next(iter(by_node.values()), None) if by_node else None
            if b["rows"].get(key) != want:
                diff.append(key)
        extra = [k for k in b["rows"] if k not in final_reads]
        if diff or extra:
            problems.append(f"node {n}: backup at index {b['applied_index']} differs from the "
                            f"final reads on {len(diff)} key(s) {sorted(diff)[:5]}"
                            + (f" and holds {len(extra)} unknown key(s)" if extra else ""))
    return {"problems": problems, "passed": not problems,
            "applied_indexes": {n: b.get("applied_index") for n, b in backups.items()},
            "checksums": {n: b.get("kv_checksum") for n, b in backups.items()}}


def json_key(v):
    return repr(v)


# --- honest errors (issue 10) -------------------------------------------------------------

def server_claims_not_applied(r):
    """True if the server answered this write with an error that, read as design.md
    promises (UNAVAILABLE / RESOURCE_EXHAUSTED on etcd, any ERR that is not of the UNKNOWN
    kind on text and RESP), means "not applied". Errors of the client's own (connect, timeout,
    a closed connection) are not the server's claim."""
    import clients
    e = r.get("error", "")
    if r["proto"] == "etcd":
        code, _, msg = e.partition(": ")
        return code in ("UNAVAILABLE", "RESOURCE_EXHAUSTED") and \
            not clients._NOT_SENT.search(msg) and not clients._TRANSPORT.search(msg) and \
            clients.classify_server_error(msg, code, "strict") == "failed"
    client_side = ("connect:", "send:", "ConnectionError", "ConnectionResetError",
                   "TimeoutError", "ProtocolError", "OSError", "BrokenPipeError", "timeout",
                   "ValueError", "injected")
    if e.startswith(client_side):
        return False
    return clients.classify_server_error(e, None, "strict") == "failed"


def mislabelled_writes(ops):
    """Puts answered with an error that claims "not applied" (read strictly) whose value a
    later read returned: the write did happen. Evidence for issue 10, whatever --error-mode
    the run used."""
    seen = defaultdict(set)
    for r in ops:
        if r["outcome"] != "ok":
            continue
        if r["f"] == "get" and r.get("result") is not None:
            seen[r["key"]].add(r["result"])
        elif r["f"] == "mget":
            for k, v in zip(r["keys"], r["result"] or []):
                if v is not None:
                    seen[k].add(v)
    out = []
    for r in ops:
        if r["f"] == "put" and r["outcome"] != "ok" and r.get("error") and \
                r["value"] in seen.get(r["key"], ()) and server_claims_not_applied(r):
            out.append({"id": r.get("id"), "proto": r["proto"], "node": r["node"],
                        "key": r["key"], "value": r["value"], "error": r["error"]})
    return out


# --- availability -------------------------------------------------------------------------

def availability(ops, faults):
    """Per fault kind: time from the fault to the next acknowledged write (anywhere), from the
    heal to the next acknowledged write served by a node the fault hit, and the outcomes of
    the operations started while the fault was on."""
    writes_ok = sorted((r["invoke"], r["complete"], r["node"]) for r in ops
                       if r["f"] in ("put", "del") and r["outcome"] == "ok")
    starts = {}
    for f in faults:
        if f["phase"] == "start":
            starts[f["fault_id"]] = f
    spans = []
    for f in faults:
        if f["phase"] == "end" and f["fault_id"] in starts:
            s = starts[f["fault_id"]]
            spans.append((s["kind"], s["t"], f["t"], set(s.get("targets", []))))
    per_kind = defaultdict(lambda: {"faults": 0, "to_write": [], "heal_to_write": [],
                                    "outcomes": Counter()})
    for kind, t_start, t_end, targets in spans:
        k = per_kind[kind]
        k["faults"] += 1
        nxt = next((c for i, c, n in writes_ok if i >= t_start), None)
        if nxt is not None:
            k["to_write"].append((nxt - t_start) / NS)
        if targets:
            h = next((c for i, c, n in writes_ok if i >= t_end and n in targets), None)
            if h is not None:
                k["heal_to_write"].append((h - t_end) / NS)
    for r in ops:
        for kind, t_start, t_end, _ in spans:
            if t_start <= r["invoke"] < t_end:
                per_kind[kind]["outcomes"][r["outcome"]] += 1
    out = {}
    for kind, k in sorted(per_kind.items()):
        out[kind] = {
            "faults": k["faults"],
            "to_next_write_p50": percentile(k["to_write"], 50),
            "to_next_write_p99": percentile(k["to_write"], 99),
            "to_next_write_max": max(k["to_write"], default=None),
            "heal_to_write_on_hit_node_p50": percentile(k["heal_to_write"], 50),
            "heal_to_write_on_hit_node_max": max(k["heal_to_write"], default=None),
            "ok": k["outcomes"]["ok"], "failed": k["outcomes"]["failed"],
            "unknown": k["outcomes"]["unknown"],
        }
    leaderish = [x for kind, t_start, t_end, _ in spans
                 if kind.split("+")[0] in LEADER_FAULTS
                 for x in [next(((c - t_start) / NS for i, c, n in writes_ok if i >= t_start),
                                None)] if x is not None]
    return out, {"p50": percentile(leaderish, 50), "p99": percentile(leaderish, 99),
                 "max": max(leaderish, default=None), "n": len(leaderish)}


def op_counts(ops):
    c = Counter()
    for r in ops:
        c[(r["f"], r["proto"], r["outcome"])] += 1
    by_outcome = Counter(r["outcome"] for r in ops)
    by_proto = Counter(r["proto"] for r in ops)
    by_f = Counter(r["f"] for r in ops)
    errors = Counter()
    for r in ops:
        if r["outcome"] != "ok" and r.get("error"):
            e = r["error"]
            # group messages that differ only in numbers/addresses
            import re
            e = re.sub(r"\d+(\.\d+)*(:\d+)?", "N", e)[:90]
            errors[(r["outcome"], e)] += 1
    return {"total": len(ops), "by_outcome": dict(by_outcome), "by_proto": dict(by_proto),
            "by_f": dict(by_f),
            "errors": [{"outcome": o, "error": e, "count": n}
                       for (o, e), n in errors.most_common(15)]}
