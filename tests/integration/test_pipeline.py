"""Issue 14: pipelined writes on the client port, on the leader and on a follower.

Several connections at once each send one long pipeline of RESP SETs over a few keys of
their own (each key written many times) with GETs in between, then the same in the text
protocol. Every reply must come back in request order and say what the requests before it
in the pipeline did (a GET sees the last SET before it), and every node must end with the
last value of each key. Writes of one connection that applied out of request order (as
independent proposals or independent Forward RPCs may) show up as a wrong GET or a wrong
final value. Writes of a session, pipelined through a follower, are deduplicated on retry.
"""
import socket
import threading
import unittest

from harness import TempCluster, TextClient, wait_for_leader

FAST = ["--tick-ms=50", "--election-ticks=10"]
CONNECTIONS = 6
WRITES = 300      # per connection
KEYS = 3          # per connection


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed; buffered %r" % self.buf[:200])
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def value(self):
        line = self._line()
        if line[:1] == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v.decode()
        if line[:1] == b"*":
            return [self.value() for _ in range(int(line[1:]))]
        return line.decode()


def resp_pipeline(port, conn):
    """One connection's pipeline: returns (requests, expected replies, final values)."""
    reqs, want, last = [], [], {}
    for j in range(WRITES):
        key = f"p{port}c{conn}k{j % KEYS}"
        value = f"v{j}"
        reqs.append(resp("SET", key, value))
        want.append("+OK")
        last[key] = value
        if j % 7 == 6:  # a read in the middle sees the writes before it
            k = f"p{port}c{conn}k{(j * 5) % KEYS}"
            reqs.append(resp("GET", k))
            want.append(last.get(k))
    keys = sorted(last)
    reqs.append(resp("MGET", *keys))
    want.append([last[k] for k in keys])
    return reqs, want, last


class PipelineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = TempCluster(3, extra_args=FAST)
        for n in cls.cluster.nodes:
            n.start()
        cls.leader = wait_for_leader(cls.cluster.nodes)
        cls.follower = next(n for n in cls.cluster.nodes if n is not cls.leader)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.__exit__(None, None, None)

    def burst(self, node):
        results, errors = {}, []

        def one(conn):
            try:
                reqs, want, last = resp_pipeline(node.port, conn)
                s = socket.create_connection(("127.0.0.1", node.port), timeout=30)
                s.sendall(b"".join(reqs))
                r = RespReader(s)
                got = [r.value() for _ in want]
                s.close()
                results[conn] = (got, want, last)
            except Exception as e:  # reported below, on the test's thread
                errors.append(repr(e))

        threads = [threading.Thread(target=one, args=(c,)) for c in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(errors, [])
        final = {}
        for conn, (got, want, last) in results.items():
            for i, (g, w) in enumerate(zip(got, want)):
                self.assertEqual(g, w, f"connection {conn}, reply {i}: out of request order")
            final.update(last)
        self.assertEqual(len(results), CONNECTIONS)
        # Every node ends with the last value of every key (a read barrier on each).
        for n in self.cluster.nodes:
            c = TextClient(n.port)
            keys = sorted(final)
            for k in keys:
                self.assertEqual(c.cmd(f"GET {k}"), final[k], f"node {n.id}, key {k}")
            c.close()

    def test_resp_pipelines_on_the_leader(self):
        self.burst(self.leader)

    def test_resp_pipelines_on_a_follower(self):
        self.burst(self.follower)

    def test_text_pipeline_on_a_follower_with_deletes(self):
        c = TextClient(self.follower.port)
        cmds, want = [], []
        for j in range(200):
            cmds += [f"SET t{j % 2} {j}", f"DEL u", f"SET u {j}"]
            want += ["OK", "KEY NOT FOUND" if j == 0 else "OK", "OK"]
            if j % 10 == 9:
                cmds.append("GET t1")
                want.append(str(j))
        self.assertEqual(c.pipeline(cmds), want)
        self.assertEqual(c.pipeline(["GET t0", "GET t1", "GET u"]), ["198", "199", "199"])
        c.close()

    def test_session_pipeline_through_a_follower_is_deduplicated(self):
        c = TextClient(self.follower.port)
        self.assertEqual(c.cmd("SESSION 4242 1"), "OK")
        self.assertEqual(c.pipeline([f"SET s {j}" for j in range(1, 21)]), ["OK"] * 20)
        # The last five again, same sequences: answered, not applied again.
        self.assertEqual(c.cmd("SESSION 4242 16"), "OK")
        self.assertEqual(c.pipeline(["SET s 16", "SET s 17", "SET s 18", "SET s 19", "SET s x"]),
                         ["OK"] * 5)
        self.assertEqual(c.cmd("GET s"), "20")
        c.close()


if __name__ == "__main__":
    unittest.main()
