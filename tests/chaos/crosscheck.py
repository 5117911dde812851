#!/usr/bin/env python3
"""Cross-checks lincheck.py's verdicts against Porcupine's on the same histories (by hand).

  tests/chaos/crosscheck.py [--vectors DIR] [--timeout 60s] [RUN_DIR ...]

Histories: every jepsen-etcd register and every key of the kv vectors (../shared/
test-vectors), the hand-made ones of test_checker.py, and every key of each chaos RUN_DIR
given (its history.jsonl). Needs Go (Debian's golang-go 1.19 builds it) and the Go module
proxy for github.com/anishathalye/porcupine v1.3.1 (fetched into the Go module cache on
first use). Exit 0 iff every verdict agrees (Porcupine's Unknown = timed out is reported,
not counted as a disagreement).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lincheck as L  # noqa: E402
import test_checker as T  # noqa: E402

MODELS = {"kv": L.KV_MODEL, "etcd": L.ETCD_MODEL, "append": L.APPEND_MODEL}


def to_json_ops(model, ops):
    """lincheck Ops -> the Go tool's op records."""
    out = []
    for op in ops:
        inp, o = op.input, op.output
        unknown = o is L.UNKNOWN_OUTPUT
        noret = op.ret == math.inf
        rec = {"call": int(op.call), "ret": 0 if noret else int(op.ret), "noret": noret,
               "f": inp[0], "unknown": unknown}
        if inp[0] in ("put", "write", "append"):
            rec["a"] = str(inp[1])
        elif inp[0] == "cas":
            rec["a"], rec["b"] = str(inp[1]), str(inp[2])
            rec["flag"] = bool(o) if not unknown else False
        elif inp[0] == "del":
            rec["flag"] = bool(o) if not unknown else False
        elif inp[0] in ("get", "read"):
            if not unknown and o is not None:
                rec["out"] = str(o)
        out.append(rec)
    return out


def scaled(ops, factor):
    """Integer times for Porcupine (hand-made tests use fractions)."""
    return [L.Op(o.call * factor, o.ret if o.ret == math.inf else o.ret * factor, o.input,
                 o.output) for o in ops]


def collect(vectors, run_dirs):
    hs = []  # (name, model name, ops)
    if vectors is None:
        return collect_rest(hs, run_dirs)
    d = os.path.join(vectors, "jepsen-etcd")
    for name in sorted(os.listdir(d)):
        if name.endswith(".log"):
            hs.append((f"jepsen/{name}", "etcd", L.parse_jepsen_etcd(os.path.join(d, name))))
    d = os.path.join(vectors, "kv")
    for name in sorted(os.listdir(d)):
        if name.endswith(".txt"):
            for key, ops in sorted(L.parse_kv_edn(os.path.join(d, name)).items()):
                hs.append((f"kv/{name}/key={key}", "append", ops))
    return collect_rest(hs, run_dirs)


def collect_rest(hs, run_dirs):
    # the hand-made histories of the unit tests, recorded by running them with a spy
    hand = []
    real = L.check_ops

    def spy(model, ops, *a, **k):
        if model is L.KV_MODEL:
            hand.append(list(ops))
        return real(model, ops, *a, **k)
    L.check_ops = spy
    try:
        suite = __import__("unittest").defaultTestLoader.loadTestsFromTestCase(
            T.KvModelHistories)
        __import__("unittest").TextTestRunner(stream=open(os.devnull, "w")).run(suite)
    finally:
        L.check_ops = real
    for i, ops in enumerate(hand):
        if len(ops) <= 30:  # skip the deliberately hard budget tests
            hs.append((f"hand-made/{i}", "kv", scaled(ops, 1000)))
    for rd in run_dirs:
        recs = [json.loads(x) for x in open(os.path.join(rd, "history.jsonl")) if x.strip()]
        ops = [r for r in recs if r.get("type") == "op"]
        for key, kops in sorted(L.kv_ops_by_key(ops).items()):
            hs.append((f"run:{os.path.basename(rd.rstrip('/'))}/key={key}", "kv", kops))
    return hs


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vectors", default=T.VECTORS)
    p.add_argument("--timeout", default="60s", help="Porcupine's time per history")
    p.add_argument("--budget", type=float, default=60.0, help="lincheck's time per history")
    p.add_argument("--max-states", type=int, default=5_000_000,
                   help="lincheck's memo cap per history (about 200 bytes a state)")
    p.add_argument("--skip-vectors", action="store_true",
                   help="only the hand-made histories and the RUN_DIRs")
    p.add_argument("runs", nargs="*")
    a = p.parse_args()
    go = shutil.which("go") or ("/usr/lib/go-1.19/bin/go"
                                if os.path.exists("/usr/lib/go-1.19/bin/go") else None)
    if not go:
        print("crosscheck: no Go (apt-get install golang-go)", file=sys.stderr)
        return 2
    hs = collect(None if a.skip_vectors else a.vectors, a.runs)
    ours = {}
    for name, model, ops in hs:
        t = time.monotonic()
        r = L.check_ops(MODELS[model], ops, a.budget, max_states=a.max_states)
        ours[name] = (r.verdict, time.monotonic() - t)
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "porcupine-check")
        env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=mod")
        b = subprocess.run([go, "build", "-o", binary, "."], cwd=os.path.join(HERE, "porcupine"),
                           env=env, capture_output=True, text=True)
        if b.returncode != 0:
            print("crosscheck: building the Porcupine tool failed:\n" + b.stderr,
                  file=sys.stderr)
            return 2
        payload = {"histories": [{"name": n, "model": m, "ops": to_json_ops(MODELS[m], ops)}
                                 for n, m, ops in hs]}
        r = subprocess.run([binary, a.timeout], input=json.dumps(payload), capture_output=True,
                           text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 2
    theirs = {}
    for line in r.stdout.splitlines():
        name, verdict, secs = line.split("\t")
        theirs[name] = (verdict.lower(), float(secs))
    agree = disagree = unknown = 0
    tally = {}
    for name, _, _ in hs:
        o, t = ours[name]
        p_, pt = theirs[name]
        group = name.split("/")[0].split(":")[0]
        g = tally.setdefault(group, {"n": 0, "agree": 0, "illegal": 0, "ours_s": 0.0,
                                     "porcupine_s": 0.0})
        g["n"] += 1
        g["ours_s"] += t
        g["porcupine_s"] += pt
        if o == L.ILLEGAL:
            g["illegal"] += 1
        if p_ == "unknown" or o == L.UNKNOWN:
            unknown += 1
            print(f"UNDECIDED {name}: lincheck {o}, porcupine {p_}")
        elif o == p_:
            agree += 1
            g["agree"] += 1
        else:
            disagree += 1
            print(f"DISAGREE {name}: lincheck {o}, porcupine {p_}")
    for group, g in tally.items():
        print(f"{group:10s} {g['n']:5d} histories, {g['agree']:5d} agree, {g['illegal']:4d} "
              f"illegal; lincheck {g['ours_s']:.1f}s, porcupine {g['porcupine_s']:.1f}s")
    print(f"crosscheck: {agree} agree, {disagree} disagree, {unknown} undecided "
          f"(of {len(hs)})")
    return 0 if disagree == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
