#!/usr/bin/env python3
"""Issue 10 item 4 by hand: the raft loop's longest iteration and tick gap while the leader
counts a large keyspace (RESP DBSIZE) and while a follower installs a snapshot of it.

The scenario of tests/integration/test_loop_latency.py (one follower misses the loading, the
other two nodes restart, the leader runs DBSIZE five times, the follower comes back and
installs a snapshot), with 1,000,000 keys and kvd's default timing (--tick-ms=100,
--election-ticks=10: a 1-2 s election timeout) unless told otherwise. Prints the figures
kvctl status reports (loop_max_iteration_us, loop_max_tick_gap_us) and whether the term
changed.

Usage: bench/loop_latency.py [--keys N] [--bin DIR] [kvd flags...]
"""
import argparse
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--bin", default=os.path.join(here, "..", "build", "bin"))
    args, kvd_flags = p.parse_known_args()
    os.environ["RAFTKV_BIN"] = os.path.abspath(args.bin)
    import harness  # noqa: E402  (RAFTKV_BIN is read at import)
    import test_loop_latency as t  # noqa: E402

    flags = ["--snapshot-entries=20", "--log-retained-entries=5", "--backup-interval-ms=200",
             "--request-timeout-ms=60000"] + kvd_flags
    with harness.TempCluster(3, extra_args=flags) as cluster:
        for n in cluster.nodes:
            n.start()
        out = t.run_scenario(cluster, args.keys, log=lambda m: print(m, flush=True))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
