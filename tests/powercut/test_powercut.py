"""The power-cut shim and its rollback (README.md): a process under the shim makes synced and
unsynced changes of every kind, is SIGKILLed, and the cut must keep exactly the synced ones.

Run by ctest (powercut.shim) with POWERCUT_SHIM set to the built library.
"""
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest

from powercut import PowerCut

SHIM = os.environ.get("POWERCUT_SHIM",
                      os.path.join(os.path.dirname(__file__), "../../build/lib/powercut_shim.so"))

# Runs under the shim with ROOT = the tracked directory, then kills itself.
CHILD = textwrap.dedent("""
    import os, signal, sys
    root = sys.argv[1]

    def fsync_path(path):
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def write_file(path, data, sync=True, flags=0):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        os.write(fd, data)
        if sync:
            os.fsync(fd)
        return fd

    # Set-up, all durable: d/ and n/, and in n/ the files old, e and t.
    d = os.path.join(root, "d")
    n = os.path.join(root, "n")
    os.mkdir(d)
    os.mkdir(n)
    fsync_path(root)
    os.close(write_file(os.path.join(n, "old"), b"old", flags=os.O_TRUNC))
    os.close(write_file(os.path.join(n, "e"), b"eee"))
    t = write_file(os.path.join(n, "t"), b"0123456789")
    fsync_path(n)

    # In n/, never fsynced again: every name change below is lost.
    os.close(write_file(os.path.join(n, "b"), b"bbb"))  # contents synced, name not
    os.close(write_file(os.path.join(n, "c.tmp"), b"new"))
    os.rename(os.path.join(n, "c.tmp"), os.path.join(n, "old"))  # replaces "old"
    os.unlink(os.path.join(n, "e"))
    os.mkdir(os.path.join(n, "m"))
    os.ftruncate(t, 3)  # data: not synced either

    # In d/, fsynced at the end.
    a = write_file(os.path.join(d, "a"), b"AAAA")  # durable "AAAA", then unsynced changes
    os.write(a, b"BBBB")
    os.pwrite(a, b"xx", 0)
    os.close(write_file(os.path.join(d, "s.tmp"), b"safe"))
    os.rename(os.path.join(d, "s.tmp"), os.path.join(d, "s"))
    os.close(write_file(os.path.join(d, "f"), b"lost data", sync=False))
    fsync_path(d)
    # Outside root: never touched by the cut.
    with open(sys.argv[2], "w") as out:
        out.write("untracked")
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


class PowerCutTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="raftkv-powercut-")
        self.addCleanup(self.tmp.cleanup)
        self.root = os.path.join(self.tmp.name, "root")
        os.mkdir(self.root)
        self.outside = os.path.join(self.tmp.name, "outside.txt")
        self.pc = PowerCut(self.root, self.tmp.name)

    def run_child(self):
        self.assertTrue(os.path.exists(SHIM), f"no shim at {SHIM}: build target powercut_shim")
        env = dict(os.environ)
        env.update(self.pc.env(os.path.abspath(SHIM)))
        p = subprocess.run([sys.executable, "-c", CHILD, self.root, self.outside], env=env,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, -signal.SIGKILL, p.stderr)
        self.assertIn("ready", p.stdout)

    def read(self, *parts):
        with open(os.path.join(self.root, *parts), "rb") as f:
            return f.read()

    def test_before_the_cut_everything_is_visible(self):
        self.run_child()
        self.assertEqual(self.read("d", "a"), b"xxAABBBB")
        self.assertEqual(self.read("n", "old"), b"new")
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "n"))),
                         ["b", "m", "old", "t"])
        self.assertEqual(self.read("n", "t"), b"012")

    def test_the_cut_keeps_what_was_synced_and_drops_the_rest(self):
        self.run_child()
        summary = self.pc.cut()
        # n/: every name change since its last fsync undone; t's truncation undone.
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "n"))), ["e", "old", "t"],
                         summary)
        self.assertEqual(self.read("n", "old"), b"old")
        self.assertEqual(self.read("n", "e"), b"eee")
        self.assertEqual(self.read("n", "t"), b"0123456789")
        # d/: names kept (d was fsynced); a back to its synced contents; f's data never synced.
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "d"))), ["a", "f", "s"])
        self.assertEqual(self.read("d", "a"), b"AAAA")
        self.assertEqual(self.read("d", "s"), b"safe")
        self.assertEqual(self.read("d", "f"), b"")
        with open(self.outside) as f:
            self.assertEqual(f.read(), "untracked")
        # A second cut with nothing new changes nothing.
        self.assertEqual(self.pc.cut(), {"files_rolled_back": 0, "bytes_dropped": 0,
                                         "names_undone": 0})
        self.assertEqual(self.read("d", "a"), b"AAAA")


if __name__ == "__main__":
    unittest.main()
