#!/usr/bin/env python3
"""Turns bench/compare.sh's raw results (one JSON object per tool run, tagged with round,
system, workload, role) into medians over the rounds, the chart's data and one table."""
import argparse
import collections
import json
import statistics

SYSTEMS = {"raftkv": "raftkv", "etcd34": "etcd 3.4", "etcd36": "etcd 3.6", "redis": "redis"}


def describe(workload, tool):
    if workload.startswith("put-c"):
        c = int(workload[5:])
        return f"etcd API put, {c:,} client{'s' if c > 1 else ''} / {min(c, 100)} conn{'s' if c > 1 else ''}, 256 B"
    if workload.startswith("put-open"):
        return f"etcd API put, open loop at {int(workload[8:]):,}/s (at most 1,000 in flight / 100 conns), 256 B"
    if workload == "range-c100":
        return "etcd API linearizable range, 100 clients / 100 conns"
    if workload.startswith("resp-"):
        _, cmd, rest = workload.split("-", 2)
        pipe = " -P 16" if rest.endswith("P16") else ""
        size = " -d 100" if cmd == "set" else ""
        return f"RESP {cmd.upper()} -c 50{pipe}{size} ({tool})"
    return workload


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--header", required=True)
    ap.add_argument("--raw", required=True)
    ap.add_argument("--medians", required=True)
    ap.add_argument("--sweep", required=True)
    ap.add_argument("--table", required=True)
    a = ap.parse_args()

    runs = collections.defaultdict(list)  # (workload, tool, system, role) -> [result]
    order = []
    for line in open(a.raw):
        line = line.strip()
        if not line:
            continue
        d = json.loads(line)
        key = (d["workload"], d["tool"], d["system"], d.get("role", ""))
        if (d["workload"], d["tool"]) not in order:
            order.append((d["workload"], d["tool"]))
        runs[key].append(d)

    med = {}
    with open(a.medians, "w") as f:
        f.write("workload\ttool\tsystem\trole\truns\tthroughput\tthroughput_min\tthroughput_max\t"
                "p50_ms\tp99_ms\tp999_ms\terrors\ttimeouts\n")
        for key, rs in sorted(runs.items()):
            tp = [r["throughput"] for r in rs]
            lat = lambda k: statistics.median(r["latency_us"]["all"].get(k, 0) / 1000 for r in rs)
            m = dict(n=len(rs), tp=statistics.median(tp), lo=min(tp), hi=max(tp), p50=lat("p50"),
                     p99=lat("p99"), p999=lat("p999"),
                     errors=sum(r.get("errors", 0) for r in rs),
                     timeouts=sum(r.get("timeouts", 0) for r in rs),
                     unsent=sum(r.get("unsent", 0) for r in rs))
            med[key] = m
            f.write("\t".join(str(x) for x in (*key, m["n"], f"{m['tp']:.1f}", f"{m['lo']:.1f}",
                                               f"{m['hi']:.1f}", f"{m['p50']:.3f}", f"{m['p99']:.3f}",
                                               f"{m['p999']:.3f}", m["errors"], m["timeouts"])) + "\n")

    # The chart's data: one block per system (gnuplot `index`), put throughput and p99 by clients.
    blocks = []
    for system in ("raftkv", "etcd34", "etcd36"):
        pts = sorted((int(w[5:]), m) for (w, t, s, r), m in med.items()
                     if s == system and w.startswith("put-c"))
        if pts:
            blocks.append(f'"{SYSTEMS[system]}" clients ops_per_s p99_ms\n' +
                          "".join(f"{c} {m['tp']:.1f} {m['p99']:.3f}\n" for c, m in pts))
    with open(a.sweep, "w") as f:
        f.write("\n\n".join(blocks))  # blocks apart by two blank lines, none after the last

    def cell(m):
        if m is None:
            return "–"
        s = f"{m['tp']:,.0f}/s"
        if m["n"] > 1:
            s += f" ({m['lo']:,.0f}-{m['hi']:,.0f})"
        s += f", p50 {m['p50']:.2f} ms, p99 {m['p99']:.2f} ms"
        if m.get("unsent"):
            s += f", {m['unsent']} due but unsent"
        if m["errors"] or m["timeouts"]:
            s += f", {m['errors']} errors, {m['timeouts']} timeouts"
        return s

    def ratio(x, y):
        return f"{x['tp'] / y['tp']:.3g}" if x and y and y["tp"] > 0 else "–"

    present = {s for (_, _, s, _) in med}
    peers = [s for s in ("etcd34", "etcd36", "redis") if s in present]
    lines = [l.rstrip("\n").lstrip("# ") for l in open(a.header)]
    out = [*lines, "",
           "| workload (medians over rounds; range of throughput in brackets) | raftkv | "
           + " | ".join(SYSTEMS[p] for p in peers) + " | raftkv / peer (throughput) |",
           "|---|---|" + "---|" * len(peers) + "---|"]
    for workload, tool in order:
        get = lambda s, r="": med.get((workload, tool, s, r))
        if workload.startswith("resp-"):
            leader, follower = get("raftkv", "leader"), get("raftkv", "follower")
            mine = f"leader {cell(leader)}; follower {cell(follower)}"
            ratios = (f"leader {ratio(leader, get('redis'))}, follower {ratio(follower, get('redis'))}"
                      if get("redis") else "–")
        else:
            mine = cell(get("raftkv"))
            ratios = ", ".join(f"{ratio(get('raftkv'), get(p))} ({SYSTEMS[p]})" for p in peers
                               if get(p))
        out.append(f"| {describe(workload, tool)} | {mine} | "
                   + " | ".join(cell(get(p)) for p in peers) + f" | {ratios or '–'} |")
    with open(a.table, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
