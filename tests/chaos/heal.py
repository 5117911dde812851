#!/usr/bin/env python3
"""raftkv heal test (issue 15): after a network partition heals, how soon does the node it cut
off serve a write again?

A 3-node kvd cluster, each node a host of its own (network namespaces and nftables drop rules,
as chaos.py builds them). Each cut is held for --hold seconds while one client keeps writing to
the cut-off node and one to the majority (so the cut-off node falls behind, and with the
default --kvd-args catches up by InstallSnapshot), then healed. From the heal on, a fresh
write (its own connection, text protocol) goes to the cut-off node every --probe-ms until one
is acknowledged. A cut's heal time: from the heal (the moment the last drop rule is gone) to
the acknowledgement of the first write sent at or after it.

  tests/chaos/run heal [--kinds K,...] [--repeat N] [--hold S] [--bound S] [--bin DIR]
                       [--kvd-args "..."] [--seed S]

Kinds (the target is the node measured):
  isolated-leader    the leader, cut off from both others, both ways
  isolated-follower  a follower, cut off from both others, both ways
  one-way            packets one way only between the target and both others; in turn:
                     the leader's packets dropped, the others' packets to a follower dropped,
                     the others' packets to the leader dropped, a follower's packets dropped
  bridge             a follower and the leader cannot see each other; the third node sees both
Each round cuts once per kind listed (a kind listed twice, twice); --repeat rounds.

Exit: 0 every heal time within --bound (or no --bound); 1 a heal time over --bound, a node
that did not serve within --measure-timeout, a crash; 2 set-up error; 130 interrupted.
Without network namespaces (not root, no `ip netns`) it prints SKIPPED and exits 0.
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import chaos  # noqa: E402
from chaos import log, now_ns  # noqa: E402

KINDS = ["isolated-leader", "isolated-follower", "one-way", "bridge"]
ONE_WAY = [("leader", "out"), ("follower", "in"), ("leader", "in"), ("follower", "out")]
PROBE_KEY = chaos.KEY_PREFIX + "heal"


class HealRun(chaos.Run):
    def __init__(self, args):
        super().__init__(args)
        self.results = []
        self.cut_no = 0
        self.one_way_cuts = 0  # picks the next variant of ONE_WAY

    def client(self, i):
        return chaos.C.TextClient(self.nodes[i].ip, self.nodes[i].port, self.args.op_timeout,
                                  "safe")

    def write(self, i, tag):
        """One SET on node i over a fresh connection: (invoke ns, complete ns, Reply)."""
        cl = self.client(i)
        inv = now_ns()
        rep = cl.put(PROBE_KEY, tag)
        done = now_ns()
        cl.close()
        self.record({"type": "probe", "node": i, "tag": tag, "invoke": inv, "complete": done,
                     "outcome": rep.outcome, "error": rep.error})
        return inv, done, rep

    def load_during_cut(self, node, stop, acked):
        """A client that keeps writing to `node` until `stop`, as real clients would; counts
        its acknowledged writes in acked[node]."""
        k = 0
        while not stop.is_set():
            k += 1
            _, _, rep = self.write(node, f"cut{self.cut_no}.load{node}.{k}")
            if rep.outcome == "ok":
                acked[node] = acked.get(node, 0) + 1
            else:
                stop.wait(0.05)

    def time_to_serve(self, target, t_heal):
        """Seconds from t_heal to the first acknowledged write sent to `target` at or after
        t_heal (one new write every --probe-ms, each on its own connection); None if none
        within --measure-timeout."""
        a = self.args
        oks, lock, served = [], threading.Lock(), threading.Event()

        def attempt(k):
            _, done, rep = self.write(target, f"cut{self.cut_no}.probe{k}")
            if rep.outcome == "ok":
                with lock:
                    oks.append(done)
                served.set()

        threads, k = [], 0
        deadline = t_heal + int(a.measure_timeout * 1e9)
        while not served.is_set() and now_ns() < deadline:
            if sum(t.is_alive() for t in threads) < 64:
                t = threading.Thread(target=attempt, args=(k,), daemon=True)
                t.start()
                threads.append(t)
                k += 1
            served.wait(a.probe_ms / 1000.0)
        for t in threads:
            t.join(timeout=a.op_timeout + 2)
        with lock:
            return (min(oks) - t_heal) / 1e9 if oks else None

    def cut(self, kind):
        """Applies one cut; returns (target, what was cut)."""
        n = len(self.nodes)
        leader = self.leader()
        if leader is None:
            raise RuntimeError("no leader before a cut")
        followers = [i for i in range(n) if i != leader]
        if kind == "isolated-leader":
            t = leader
            self.net.cut([t], [i for i in range(n) if i != t])
            return t, f"leader {t} | {followers}"
        if kind == "isolated-follower":
            t = self.rng.choice(followers)
            others = [i for i in range(n) if i != t]
            self.net.cut([t], others)
            return t, f"follower {t} | {others} (leader {leader})"
        if kind == "one-way":
            role, direction = ONE_WAY[self.one_way_cuts % len(ONE_WAY)]
            self.one_way_cuts += 1
            t = leader if role == "leader" else self.rng.choice(followers)
            others = [i for i in range(n) if i != t]
            if direction == "out":
                self.net.cut([t], others, one_way=True)
                return t, f"{role} {t} -> {others} dropped"
            self.net.cut(others, [t], one_way=True)
            return t, f"{others} -> {role} {t} dropped"
        if kind == "bridge":
            t = self.rng.choice(followers)
            bridge = [i for i in followers if i != t][0]
            self.net.cut([t], [leader])
            return t, f"follower {t} | leader {leader}, bridge {bridge} sees both"
        raise ValueError(kind)

    def one_cut(self, kind):
        a = self.args
        if not self.wait_serving(30):
            raise RuntimeError(f"the cluster did not serve on every node before cut "
                               f"{self.cut_no + 1}")
        self.cut_no += 1
        target, detail = self.cut(kind)
        fid = self.fault_event(kind, "start", [target], detail)
        # Clients keep writing on both sides: to the cut-off node (failing until the heal) and
        # to the majority, whose writes the cut-off node must catch up on after the heal (by
        # InstallSnapshot once they outnumber --log-retained-entries).
        stop, acked = threading.Event(), {}
        majority_node = next(i for i in range(len(self.nodes)) if i != target)
        loaders = [threading.Thread(target=self.load_during_cut, args=(i, stop, acked),
                                    daemon=True) for i in (target, majority_node)]
        for t in loaders:
            t.start()
        self.hold(a.hold)
        self.net.heal()
        t_heal = now_ns()
        stop.set()
        self.fault_event(kind, "end", [target], fault_id=fid)
        secs = self.time_to_serve(target, t_heal)
        for t in loaders:
            t.join(timeout=a.op_timeout + 2)
        missed = acked.get(majority_node, 0)
        self.check_crashes()
        self.results.append({"cut": self.cut_no, "kind": kind, "target": target,
                             "detail": detail, "hold_s": a.hold, "heal_s": secs,
                             "writes_missed": missed})
        log(f"cut {self.cut_no} {kind} ({detail}; it missed {missed} writes): node {target} "
            "served a write "
            + (f"{secs:.2f}s after the heal" if secs is not None else
               f"NOT within {a.measure_timeout:.0f}s of the heal"))

    def execute(self):
        a = self.args
        self.start_cluster({"test": "heal", "kinds": a.kinds, "repeat": a.repeat,
                            "hold": a.hold, "bound": a.bound})
        log(f"cluster up; leader {self.leader()}; {a.repeat} round(s) of {','.join(a.kinds)}, "
            f"each held {a.hold:.1f}s")
        for _ in range(a.repeat):
            for kind in a.kinds:
                self.one_cut(kind)
        self.hist_file.close()
        self.hist_file = None
        return self.report()

    def report(self):
        a = self.args
        out = ["=" * 78,
               f"raftkv heal test: seed {a.seed}, 3 nodes, {len(self.results)} cuts held "
               f"{a.hold:.1f}s, kvd args {a.kvd_args!r}",
               f"{'kind':20s} {'n':>3s} {'median':>8s} {'max':>8s}  heal times (s)"]
        failures = []
        by_kind = {}
        for r in self.results:
            by_kind.setdefault(r["kind"], []).append(r["heal_s"])

        def row(name, xs):
            got = [x for x in xs if x is not None]
            med = f"{statistics.median(got):.2f}" if got else "-"
            mx = "never" if len(got) < len(xs) else f"{max(got):.2f}" if got else "-"
            out.append(f"{name:20s} {len(xs):3d} {med:>8s} {mx:>8s}  "
                       + " ".join("never" if x is None else f"{x:.2f}" for x in xs))
        for kind in dict.fromkeys(a.kinds):
            row(kind, by_kind.get(kind, []))
        row("all", [r["heal_s"] for r in self.results])
        for r in self.results:
            if r["heal_s"] is None:
                failures.append(f"cut {r['cut']} {r['kind']} ({r['detail']}): node "
                                f"{r['target']} served no write within "
                                f"{a.measure_timeout:.0f}s of the heal")
            elif a.bound is not None and r["heal_s"] > a.bound:
                failures.append(f"cut {r['cut']} {r['kind']} ({r['detail']}): node "
                                f"{r['target']} served its first write {r['heal_s']:.2f}s "
                                f"after the heal (bound {a.bound:.1f}s)")
        for an in self.anomalies:
            failures.append(f"anomaly: {an['kind']} on node {an['node']}")
        sent = {"done": 0, "failed": 0}  # InstallSnapshot transfers, from the node logs
        for n in self.nodes:
            try:
                with open(n.log_path, errors="replace") as f:
                    for line in f:
                        if "snapshot send:" in line:
                            sent["done" if line.rstrip().endswith("done") else "failed"] += 1
            except OSError:
                pass
        out.append(f"writes the cut-off node missed per cut: "
                   f"{[r['writes_missed'] for r in self.results]}; InstallSnapshot transfers "
                   f"done {sent['done']}, failed {sent['failed']} (node logs)")
        verdict = "FAIL" if failures else "PASS"
        out.append(f"VERDICT: {verdict}" + (f" (bound {a.bound:.1f}s on every heal)"
                                            if a.bound is not None else " (no bound given)"))
        out.extend(f"  - {f}" for f in failures)
        if failures:
            out.append(f"reproduce: tests/chaos/run heal --seed {a.seed} --repeat {a.repeat} "
                       f"--hold {a.hold} --kinds {','.join(a.kinds)}"
                       + (f" --bound {a.bound}" if a.bound is not None else "")
                       + (f" --kvd-args '{a.kvd_args}'" if a.kvd_args else ""))
        out.append("=" * 78)
        text = "\n".join(out) + "\n"
        with open(os.path.join(a.out, "report.txt"), "w") as f:
            f.write(text)
        with open(os.path.join(a.out, "heal.json"), "w") as f:
            json.dump({"seed": a.seed, "hold": a.hold, "kvd_args": a.kvd_args,
                       "results": self.results, "verdict": verdict, "failures": failures},
                      f, indent=1)
        print(text, end="", flush=True)
        return 1 if failures else 0


def parse_args(argv):
    p = argparse.ArgumentParser(prog="heal.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", default=",".join(KINDS),
                   help=f"comma-separated, of {KINDS}; one cut each per round")
    p.add_argument("--repeat", type=int, default=3, help="rounds (every kind once each)")
    p.add_argument("--hold", type=float, default=4.0, help="seconds each cut lasts")
    p.add_argument("--bound", type=float, default=None,
                   help="fail if any heal time exceeds this many seconds (CI: 2)")
    p.add_argument("--probe-ms", type=float, default=50.0,
                   help="after the heal, a new write to the cut-off node this often")
    p.add_argument("--measure-timeout", type=float, default=30.0,
                   help="give up on a cut-off node that serves no write this long after a heal")
    p.add_argument("--op-timeout", type=float, default=8.0,
                   help="client-side timeout of one write (kvd's own is 5 s)")
    p.add_argument("--seed", type=int, default=None, help="picks the followers cut (default: "
                                                          "time)")
    p.add_argument("--bin", default=os.path.join(chaos.REPO, "build", "bin"),
                   help="directory holding kvd (default: build/bin)")
    p.add_argument("--kvd-args", default="--snapshot-entries 200 --log-retained-entries 50",
                   help="extra kvd flags (default: snapshots so frequent that a cut-off node "
                        "catches up by InstallSnapshot after the heal, over the same channel)")
    p.add_argument("--no-netns", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="where history, node logs and report go "
                                               "(default build/chaos/heal-SEED-TIME)")
    p.add_argument("--workdir", default=None, help="(set by run) scratch dir for data dirs")
    p.add_argument("--tag", default=None, help="(set by run) name prefix of the namespaces")
    a = p.parse_args(argv)
    a.kinds = [k for k in a.kinds.split(",") if k]
    bad = [k for k in a.kinds if k not in KINDS]
    if bad or not a.kinds:
        p.error(f"unknown kind(s) {bad}; choose from {KINDS}")
    if a.repeat < 1 or a.hold <= 0:
        p.error("--repeat must be >= 1 and --hold > 0")
    if a.seed is None:
        a.seed = int(time.time()) % 1_000_000
    if a.out is None:
        a.out = os.path.join(chaos.REPO, "build", "chaos", f"heal-{a.seed}-{int(time.time())}")
    a.out = os.path.abspath(a.out)
    a.bin = os.path.abspath(a.bin)
    a.nodes = 3
    a.faults = ["partition"]
    return a


if __name__ == "__main__":
    sys.exit(chaos.launch(parse_args(sys.argv[1:]), HealRun, partitions_required=True))
