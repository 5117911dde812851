"""A simulated power cut for processes run under powercut_shim.so (README.md here).

    pc = PowerCut(root, work_dir)        # work_dir: outside root, same file system
    env = pc.env(shim_path)              # LD_PRELOAD + POWERCUT_* for the process
    ... run the process with env, SIGKILL it, wait for it ...
    pc.cut()                              # root is now what a power cut would have left

cut() rolls back, from the shim's log, every change under root that no fsync made durable:
file contents and sizes to their last fsync/fdatasync (or to how the process first found
them), and creations, renames, unlinks, mkdirs and rmdirs not followed by an fsync of the
directory that holds the name. Then it starts a new log: the next process starts on a disk
where everything is durable.

By hand: python3 powercut.py cut ROOT WORK_DIR (after the process under the shim is dead).
"""
import os
import shutil


def _unhex(h):
    return bytes.fromhex(h).decode()


class PowerCut:
    def __init__(self, root, work_dir, fresh=True):
        """fresh: start an empty log (else use the one in work_dir, for cutting by hand)."""
        self.root = os.path.abspath(root)
        self.log = os.path.join(work_dir, "powercut.log")
        self.shadow = os.path.join(work_dir, "powercut.shadow")
        os.makedirs(self.shadow, exist_ok=True)
        if fresh or not os.path.exists(self.log):
            open(self.log, "wb").close()

    def env(self, shim):
        return {"LD_PRELOAD": shim, "POWERCUT_ROOT": self.root, "POWERCUT_LOG": self.log,
                "POWERCUT_SHADOW": self.shadow}

    # ---- reading the log ----

    def records(self):
        """The log as a list of tuples; ('W', dev, ino, off, bytes) carries the old bytes.
        A namespace record followed by K (its call failed) is dropped."""
        with open(self.log, "rb") as f:
            data = f.read()
        out, pos = [], 0
        while pos < len(data):
            end = data.index(b"\n", pos)
            fields = data[pos:end].decode().split(" ")
            pos = end + 1
            op = fields[0]
            if op == "W":
                dev, ino, off, n = (int(x) for x in fields[1:5])
                out.append(("W", dev, ino, off, data[pos:pos + n]))
                pos += n
            elif op == "K":
                assert out and out[-1][0] in "CMRUD", f"K after {out[-1:]}"
                out.pop()
            elif op in ("F", "S"):
                out.append((op,) + tuple(int(x) for x in fields[1:4]) + tuple(fields[4:]))
            else:
                out.append((op,) + tuple(fields[1:]))
        return out

    # ---- the cut ----

    def cut(self):
        """Rolls root back to its durable state (the process must be dead) and resets the log.
        Returns a summary (counts of what was undone) for test messages."""
        recs = self.records()
        summary = {"files_rolled_back": 0, "bytes_dropped": 0, "names_undone": 0}
        self._rollback_data(recs, summary)
        self._rollback_names(recs, summary)
        for name in os.listdir(self.shadow):
            os.unlink(os.path.join(self.shadow, name))
        open(self.log, "wb").close()
        return summary

    def _inode_paths(self):
        paths = {}
        for top in (self.root, self.shadow):
            for dirpath, _, files in os.walk(top):
                for name in files:
                    p = os.path.join(dirpath, name)
                    st = os.lstat(p)
                    paths.setdefault((st.st_dev, st.st_ino), p)
        return paths

    def _rollback_data(self, recs, summary):
        # Per inode: the size made durable last (S), else the size first seen (F), and the
        # writes since, undone newest first.
        durable, undo = {}, {}
        for r in recs:
            if r[0] == "F":
                durable.setdefault((r[1], r[2]), r[3])
            elif r[0] == "S":
                durable[(r[1], r[2])] = r[3]
                undo[(r[1], r[2])] = []
            elif r[0] == "W":
                undo.setdefault((r[1], r[2]), []).append((r[3], r[4]))
        paths = self._inode_paths()
        for key, size in durable.items():
            path = paths.get(key)
            if path is None:
                continue  # no name left: nothing can see it
            with open(path, "r+b") as f:
                before = os.fstat(f.fileno()).st_size
                for off, old in reversed(undo.get(key, [])):
                    f.seek(off)
                    f.write(old)
                f.truncate(size)
            if undo.get(key) or before != size:
                summary["files_rolled_back"] += 1
                summary["bytes_dropped"] += max(0, before - size)

    def _rollback_names(self, recs, summary):
        # A name change is durable iff its directory was fsynced after it (for a rename: the
        # directory of the new name).
        last_dir_sync = {}
        for i, r in enumerate(recs):
            if r[0] == "Y":
                last_dir_sync[_unhex(r[1])] = i

        def durable(i, path):
            return last_dir_sync.get(os.path.dirname(path), -1) > i

        for i in range(len(recs) - 1, -1, -1):
            r = recs[i]
            op = r[0]
            if op not in "CMRUD":
                continue
            path = _unhex(r[2] if op == "R" else r[1])
            if durable(i, path):
                continue
            summary["names_undone"] += 1
            if op == "C":
                if os.path.lexists(path) and not os.path.isdir(path):
                    os.unlink(path)
            elif op == "M":
                if os.path.isdir(path):
                    shutil.rmtree(path)
            elif op == "D":
                os.makedirs(path, exist_ok=True)
            elif op == "U":
                if r[2] != "-" and not os.path.lexists(path):
                    os.link(os.path.join(self.shadow, r[2]), path)
            elif op == "R":
                src = _unhex(r[1])
                if os.path.lexists(path):
                    os.rename(path, src)
                if r[3] != "-":
                    os.link(os.path.join(self.shadow, r[3]), path)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 4 or sys.argv[1] != "cut":
        sys.exit("usage: powercut.py cut ROOT WORK_DIR")
    print(PowerCut(sys.argv[2], sys.argv[3], fresh=False).cut())
