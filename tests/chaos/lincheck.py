"""Linearizability checking (stdlib only): the Wing-Gong search with Lowe's memoization.

This is the algorithm of Porcupine and Knossos ("WGL"): walk the history as a list of call and
return entries ordered by time; at each call, try to linearize that operation next (step the
sequential model); if the model accepts and the pair (set of linearized operations, model
state) was never seen before, remove the operation from the list and go on from the start;
on reaching a return entry whose operation is not linearized yet, backtrack. The history is
linearizable iff the list empties. The memo of (linearized set, state) pairs is what makes the
search practical (Lowe, "Testing for linearizability", 2017).

Operations of unknown outcome (a write that timed out) get a return time of +infinity: they
may take effect at any point after their call, or never (linearizing a write after every
other operation is the same as never applying it, as far as the history can tell).

Keys are independent registers, so a multi-key history is checked key by key
(P-compositionality). Each key's search has a time budget; a key that exceeds it makes the
verdict UNKNOWN (inconclusive), never OK.

Models (`step(state, input, output) -> (ok, new_state)`, states hashable):
  KV_MODEL      raftkv's keys: put / get / delete(-> existed?), absent = None
  ETCD_MODEL    Jepsen's etcd register: read / write / cas
  APPEND_MODEL  Porcupine's kv model: get / put / append on strings starting ""
"""
import json
import math
import re
import time
from collections import defaultdict

INF = math.inf
OK, ILLEGAL, UNKNOWN = "ok", "illegal", "unknown"

# An output that constrains nothing (the operation's result is unknown).
UNKNOWN_OUTPUT = ("?",)


class Op:
    """One operation: a client call at `call`, its return at `ret` (INF: unknown outcome)."""

    __slots__ = ("call", "ret", "input", "output", "meta")

    def __init__(self, call, ret, input, output, meta=None):
        self.call, self.ret, self.input, self.output, self.meta = call, ret, input, output, meta

    def __repr__(self):
        return f"Op({self.call}, {self.ret}, {self.input!r}, {self.output!r})"


class Model:
    def __init__(self, name, init, step, describe):
        self.name, self.init, self.step, self.describe = name, init, step, describe


# --- raftkv's key: a register that may be absent ------------------------------------------
# inputs: ("put", v) | ("get",) | ("del",); outputs: None for put, the value (None = absent)
# for get, True/False (the key existed) for del, or UNKNOWN_OUTPUT.

def _kv_step(state, inp, out):
    f = inp[0]
    if f == "put":
        return True, inp[1]
    if f == "get":
        return (out is UNKNOWN_OUTPUT or out == state), state
    if f == "del":
        return (out is UNKNOWN_OUTPUT or out == (state is not None)), None
    raise ValueError(f"kv model: unknown input {inp!r}")


def _kv_describe(inp, out):
    f = inp[0]
    r = "?" if out is UNKNOWN_OUTPUT else out
    if f == "put":
        return f"put({inp[1]!r})" + (" -> ?" if out is UNKNOWN_OUTPUT else "")
    if f == "get":
        return f"get() -> {'absent' if r is None else repr(r)}"
    return f"del() -> {'?' if r == '?' else ('deleted' if r else 'not found')}"


KV_MODEL = Model("kv", None, _kv_step, _kv_describe)


# --- Jepsen's etcd register with cas (the model of Porcupine's etcd tests) ------------------
# inputs: ("read",) | ("write", v) | ("cas", old, new); outputs: ("read" -> value or None),
# ("cas" -> True/False), write -> None; or UNKNOWN_OUTPUT.

def _etcd_step(state, inp, out):
    f = inp[0]
    if f == "read":
        return (out is UNKNOWN_OUTPUT or out == state), state
    if f == "write":
        return True, inp[1]
    if f == "cas":
        matched = state == inp[1]
        ok = out is UNKNOWN_OUTPUT or out == matched
        return ok, (inp[2] if matched else state)
    raise ValueError(f"etcd model: unknown input {inp!r}")


def _etcd_describe(inp, out):
    r = "?" if out is UNKNOWN_OUTPUT else out
    if inp[0] == "read":
        return f"read() -> {'nil' if r is None else r}"
    if inp[0] == "write":
        return f"write({inp[1]})"
    return f"cas({inp[1]}, {inp[2]}) -> {r}"


ETCD_MODEL = Model("etcd", None, _etcd_step, _etcd_describe)


# --- Porcupine's kv model: strings with put / append / get --------------------------------

def _append_step(state, inp, out):
    f = inp[0]
    if f == "get":
        return (out is UNKNOWN_OUTPUT or out == state), state
    if f == "put":
        return True, inp[1]
    if f == "append":
        return True, state + inp[1]
    raise ValueError(f"append model: unknown input {inp!r}")


def _append_describe(inp, out):
    if inp[0] == "get":
        return f"get() -> {out!r}"
    return f"{inp[0]}({inp[1]!r})"


APPEND_MODEL = Model("append", "", _append_step, _append_describe)


# --- the search ---------------------------------------------------------------------------

class Result:
    """Verdict of one key: `verdict` is OK, ILLEGAL or UNKNOWN (budget exceeded); for
    ILLEGAL, `prefix` is the longest linearized prefix found (op indexes, in order) and
    `stuck` the operation that could not be placed after it."""

    def __init__(self, verdict, ops, prefix=(), stuck=None, states=0, seconds=0.0):
        self.verdict, self.ops, self.prefix, self.stuck = verdict, ops, list(prefix), stuck
        self.states, self.seconds = states, seconds


def check_ops(model, ops, budget_s=10.0, max_states=4_000_000):
    """Checks one independent history (one key). Returns a Result: UNKNOWN when the search
    needs more than `budget_s` seconds or memoizes more than `max_states` states (the
    memory bound: roughly 200 bytes a state)."""
    t0 = time.monotonic()
    n = len(ops)
    if n == 0:
        return Result(OK, ops)
    # Entries: 0 = head, 1..2n = calls and returns, 2n+1 = tail. Ties: calls first, so two
    # operations that touch at one instant count as concurrent (the lenient reading).
    events = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        events.append((op.ret, 1, i))
    events.sort(key=lambda e: (e[0], e[1]))
    size = 2 * n + 2
    tail = size - 1
    nxt = [0] * size
    prv = [0] * size
    is_call = [False] * size
    op_of = [0] * size
    match = [0] * size
    call_node = [0] * n
    ret_node = [0] * n
    for pos, (_, kind, i) in enumerate(events, start=1):
        is_call[pos] = kind == 0
        op_of[pos] = i
        if kind == 0:
            call_node[i] = pos
        else:
            ret_node[i] = pos
    for i in range(n):
        match[call_node[i]] = ret_node[i]
    for pos in range(size - 1):
        nxt[pos] = pos + 1
        prv[pos + 1] = pos
    nxt[tail] = tail

    step = model.step
    inputs = [op.input for op in ops]
    outputs = [op.output for op in ops]
    state = model.init
    linearized = 0
    cache = set()
    calls = []  # (call entry, state before it)
    best_len, best_prefix, best_stuck = -1, [], None
    entry = nxt[0]
    iterations = 0
    while nxt[0] != tail:
        iterations += 1
        if iterations & 0x3FFF == 0 and (time.monotonic() - t0 > budget_s or
                                          len(cache) > max_states):
            return Result(UNKNOWN, ops, states=len(cache), seconds=time.monotonic() - t0)
        if is_call[entry]:
            i = op_of[entry]
            ok, new_state = step(state, inputs[i], outputs[i])
            if ok:
                nl = linearized | (1 << i)
                key = (nl, new_state)
                if key not in cache:
                    cache.add(key)
                    calls.append((entry, state))
                    state, linearized = new_state, nl
                    # lift the call and its return out of the list
                    r = match[entry]
                    nxt[prv[entry]] = nxt[entry]
                    prv[nxt[entry]] = prv[entry]
                    nxt[prv[r]] = nxt[r]
                    prv[nxt[r]] = prv[r]
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            if len(calls) > best_len:
                best_len = len(calls)
                best_prefix = [op_of[c] for c, _ in calls]
                best_stuck = op_of[entry]
            if not calls:
                return Result(ILLEGAL, ops, best_prefix, best_stuck, len(cache),
                              time.monotonic() - t0)
            entry, state = calls.pop()
            linearized &= ~(1 << op_of[entry])
            # unlift: the return first, then the call (reverse order of lifting)
            r = match[entry]
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            entry = nxt[entry]
    return Result(OK, ops, states=len(cache), seconds=time.monotonic() - t0)


def check_partitioned(model, ops_by_key, budget_s=10.0, total_budget_s=None,
                      stop_on_illegal=False, max_states=4_000_000):
    """Checks every key; returns (overall verdict, {key: Result}). ILLEGAL if any key is
    illegal; else UNKNOWN if any key ran out of budget; else OK.

    Keys are searched smallest first, in rounds of growing budget (0.2 s, 2 s, then
    `budget_s` each), so one hard key cannot starve the others of the total budget. With
    `stop_on_illegal`, the first illegal key ends the search (the verdict cannot change);
    keys not searched to the end then stay UNKNOWN."""
    t0 = time.monotonic()
    keys = sorted(ops_by_key, key=lambda k: (len(ops_by_key[k]), str(k)))
    results = {k: Result(UNKNOWN, ops_by_key[k]) for k in keys}
    rounds = [b for b in (0.2, 2.0) if b < budget_s] + [budget_s]
    done = False
    for b in rounds:
        for key in keys:
            if results[key].verdict != UNKNOWN:
                continue
            left = b
            if total_budget_s is not None:
                left = min(b, total_budget_s - (time.monotonic() - t0))
            if left <= 0:
                done = True
                break
            results[key] = check_ops(model, ops_by_key[key], left, max_states)
            if stop_on_illegal and results[key].verdict == ILLEGAL:
                done = True
                break
        if done:
            break
    verdicts = {r.verdict for r in results.values()}
    overall = ILLEGAL if ILLEGAL in verdicts else UNKNOWN if UNKNOWN in verdicts else OK
    return overall, results


# --- failing windows ----------------------------------------------------------------------

def failing_window(model, result, key=None, max_ops=20, time_unit=1e-9, t0=None):
    """A short human-readable excerpt of an ILLEGAL result: the end of the longest linearized
    prefix, the state it leaves, the operation that could not be placed next and the
    operations concurrent with it."""
    ops = result.ops
    state = model.init
    for i in result.prefix:
        _, state = model.step(state, ops[i].input, ops[i].output)
    stuck = ops[result.stuck] if result.stuck is not None else None
    shown = set(result.prefix[-6:])
    if stuck is not None:
        shown.add(result.stuck)
        for i, op in enumerate(ops):
            if op.call <= stuck.ret and op.ret >= stuck.call:
                shown.add(i)
    linearized = set(result.prefix)
    base = t0 if t0 is not None else min(ops[i].call for i in shown) if shown else 0
    rows = sorted(shown, key=lambda i: (ops[i].call, ops[i].ret))
    if len(rows) > max_ops:  # keep the stuck op and its closest neighbours
        idx = rows.index(result.stuck) if result.stuck in rows else len(rows) - 1
        lo = max(0, min(idx - max_ops // 2, len(rows) - max_ops))
        rows = rows[lo:lo + max_ops]

    def ts(t):
        return "   inf" if t == INF else f"{(t - base) * time_unit:8.3f}"

    lines = [f"key {key!r}: not linearizable ({len(ops)} ops; longest linearizable prefix "
             f"{len(result.prefix)} ops, leaving state "
             f"{'absent' if state is None else repr(state)})"]
    lines.append("   call(s)  return(s)  op")
    for i in rows:
        op = ops[i]
        mark = ">>" if i == result.stuck else ("ok" if i in linearized else "  ")
        meta = f"  [{op.meta}]" if op.meta else ""
        lines.append(f"{mark} {ts(op.call)}  {ts(op.ret)}  {model.describe(op.input, op.output)}"
                     f"{meta}")
    lines.append("(>> the operation no linearization could place; ok: in the longest "
                 "linearized prefix; times relative)")
    return "\n".join(lines)


# --- raftkv histories (JSON lines written by the chaos driver) ----------------------------

def load_jsonl(path):
    ops, faults, other = [], [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            t = rec.get("type")
            (ops if t == "op" else faults if t == "fault" else other).append(rec)
    return ops, faults, other


def kv_ops_by_key(records):
    """raftkv op records -> {key: [Op]} for KV_MODEL.

    - ok: call..complete with its result;
    - failed (definitely not applied): dropped;
    - unknown: a write (put/del) may apply any time after its call: return = INF, output
      unknown; a read of unknown outcome constrains nothing and is dropped;
    - mget: one read per key at the same interval (per-key linearizability; the atomicity of
      MGET across keys is not checked here).
    """
    by_key = defaultdict(list)
    for r in records:
        outcome = r["outcome"]
        if outcome == "failed":
            continue
        f = r["f"]
        call = r["invoke"]
        ret = r["complete"] if outcome == "ok" else INF
        meta = f"#{r.get('id')} c{r.get('client')} {r.get('proto')}@n{r.get('node')}"
        if f == "put":
            out = None if outcome == "ok" else UNKNOWN_OUTPUT
            by_key[r["key"]].append(Op(call, ret, ("put", r["value"]), out, meta))
        elif f == "del":
            if outcome == "ok":
                res = r.get("result")
                out = UNKNOWN_OUTPUT if res is None else bool(res)
            else:
                out = UNKNOWN_OUTPUT
            by_key[r["key"]].append(Op(call, ret, ("del",), out, meta))
        elif f == "get":
            if outcome != "ok":
                continue
            by_key[r["key"]].append(Op(call, ret, ("get",), r.get("result"), meta))
        elif f == "mget":
            if outcome != "ok":
                continue
            for k, v in zip(r["keys"], r["result"]):
                by_key[k].append(Op(call, ret, ("get",), v, meta + " mget"))
        else:
            raise ValueError(f"unknown op {f!r} in history")
    return dict(by_key)


# --- test vectors -------------------------------------------------------------------------

# Tab-separated per the README; some files use spaces, so any whitespace separates.
_JEPSEN = re.compile(r"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+"
                     r":(read|write|cas)\s+(.*)$")


def parse_jepsen_etcd(path):
    """A Jepsen etcd log -> [Op] for ETCD_MODEL (times are line numbers)."""
    pending = {}  # process -> (call line, input)
    ops = []

    def value(s):
        return None if s == "nil" else int(s)

    with open(path) as f:
        for lineno, line in enumerate(f):
            m = _JEPSEN.match(line.rstrip("\n"))
            if not m:
                continue
            proc, typ, fn, val = int(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
            if typ == "invoke":
                if fn == "read":
                    inp = ("read",)
                elif fn == "write":
                    inp = ("write", int(val))
                else:
                    a, b = val.strip("[]").split()
                    inp = ("cas", int(a), int(b))
                if proc in pending:  # a process that never returned: unknown
                    c, pinp = pending.pop(proc)
                    ops.append(Op(c, INF, pinp, UNKNOWN_OUTPUT, f"p{proc}"))
                pending[proc] = (lineno, inp)
                continue
            if proc not in pending:
                continue
            c, inp = pending.pop(proc)
            if typ == "info":
                if inp[0] != "read":  # a read of unknown result constrains nothing
                    ops.append(Op(c, INF, inp, UNKNOWN_OUTPUT, f"p{proc}"))
            elif typ == "ok":
                out = value(val) if fn == "read" else True if fn == "cas" else None
                ops.append(Op(c, lineno, inp, out, f"p{proc}"))
            else:  # fail
                if fn == "cas":  # the compare did not match: a completed operation
                    ops.append(Op(c, lineno, inp, False, f"p{proc}"))
                elif fn == "read":  # timed out: constrains nothing
                    pass
                else:  # a failed write did not happen
                    pass
    for proc, (c, inp) in pending.items():
        if inp[0] != "read":
            ops.append(Op(c, INF, inp, UNKNOWN_OUTPUT, f"p{proc}"))
    return ops


_EDN = re.compile(r'^\{:process (\d+), :type :(invoke|ok|fail|info), :f :(get|put|append), '
                  r':key "([^"]*)", :value (nil|"[^"]*")\}$')


def parse_kv_edn(path):
    """A Porcupine kv history -> {key: [Op]} for APPEND_MODEL (times are line numbers)."""
    pending = {}
    by_key = defaultdict(list)
    with open(path) as f:
        for lineno, line in enumerate(f):
            line = line.strip()
            if not line:
                continue
            m = _EDN.match(line)
            if not m:
                raise ValueError(f"{path}:{lineno + 1}: unrecognized line {line!r}")
            proc, typ, fn, key, val = (int(m.group(1)), m.group(2), m.group(3), m.group(4),
                                       m.group(5))
            val = None if val == "nil" else val[1:-1]
            if typ == "invoke":
                pending[proc] = (lineno, fn, key, val)
                continue
            c, fn0, key0, val0 = pending.pop(proc)
            if typ == "ok":
                if fn0 == "get":
                    by_key[key0].append(Op(c, lineno, ("get",), val, f"p{proc}"))
                else:
                    by_key[key0].append(Op(c, lineno, (fn0, val0), None, f"p{proc}"))
            elif typ == "info" and fn0 != "get":
                by_key[key0].append(Op(c, INF, (fn0, val0), UNKNOWN_OUTPUT, f"p{proc}"))
    for proc, (c, fn0, key0, val0) in pending.items():
        if fn0 != "get":
            by_key[key0].append(Op(c, INF, (fn0, val0), UNKNOWN_OUTPUT, f"p{proc}"))
    return dict(by_key)
