"""raftkv clients for the chaos driver: the text protocol, RESP2 and etcd v3 gRPC.

put and delete take an optional session = (client id, sequence) (README.md, "Sessions"):
text and RESP send `SESSION id seq` just before the write, etcd sets the raftkv-session-*
metadata. Sending a write again under the same session is applied at most once.

Every call returns a Reply(outcome, result, error):
  outcome "ok"       the server answered and the operation took effect as `result` says;
          "failed"   the operation certainly did not take effect (never sent, or the server
                     said so in a way the current classification trusts: see classify());
          "unknown"  it may or may not have taken effect (timed out, connection lost after
                     sending, an error that does not rule the write out).
  result  put: None; get: the value or None (absent); del: True (deleted) / False (absent);
          mget: list of values / None.

The etcd client needs only grpcio (Debian: python3-grpcio): messages are encoded by hand
(the few fields used here), so no generated code or protobuf runtime is needed.
"""
import re
import socket

try:
    import grpc
except ImportError:  # the text/RESP clients still work; EtcdClient raises on use
    grpc = None


class Reply:
    __slots__ = ("outcome", "result", "error")

    def __init__(self, outcome, result=None, error=None):
        self.outcome, self.result, self.error = outcome, result, error

    def __repr__(self):
        return f"Reply({self.outcome}, {self.result!r}, {self.error!r})"


# --- what an error says about a write -----------------------------------------------------
# The two kinds of failure (README.md, "Errors"; issue 10): text and RESP errors start with a
# kind word after "ERR" ("UNAVAILABLE ": not applied, safe to retry; "UNKNOWN ": outcome
# unknown; none: refused as given, not applied); etcd uses the gRPC code (UNAVAILABLE,
# RESOURCE_EXHAUSTED: not applied; DEADLINE_EXCEEDED, UNKNOWN: outcome unknown).
#
# kvd's messages for a write that was refused before it was proposed. In the "safe" mode
# only these count as "failed"; anything else from the server is "unknown".
_NOT_APPLIED = [
    re.compile(r"^no leader \(election in progress\)"),
    re.compile(r"^not the leader; the leader is node \d+"),
    re.compile(r"^too many pending writes"),
    re.compile(r"^leadership changed before the write committed; it was not applied"),
    re.compile(r"^leader \d+ is not a known peer"),
    re.compile(r"^not applied: "),
    # gRPC's own "the channel never connected": the forward was never sent
    re.compile(r"^failed to connect to all addresses"),
]
_FORWARD = re.compile(r"^forwarding to the leader at \S+: (.*)$", re.S)
KIND_WORDS = ("UNAVAILABLE", "UNKNOWN")

# Modes for classify():
#   "safe"   (default) only the messages above mean "not applied" (and never an error of the
#            "outcome unknown" kind); a forwarded write is "not applied" only if the leader
#            itself answered with one of them.
#   "strict" the promise of design.md, as the wire says it: every UNAVAILABLE /
#            RESOURCE_EXHAUSTED (etcd) and every ERR that is not of the UNKNOWN kind (text,
#            RESP) means "not applied".
ERROR_MODES = ("safe", "strict")


def split_kind(message):
    """(kind word or None, the rest) of a text/RESP error message (after "ERR")."""
    msg = message.strip()
    for word in KIND_WORDS:
        if msg.startswith(word + " "):
            return word, msg[len(word) + 1:].strip()
    return None, msg


def classify_server_error(message, grpc_code=None, mode="safe"):
    """'failed' or 'unknown' for a write the server answered with an error."""
    kind, msg = split_kind(message) if grpc_code is None else (None, message.strip())
    if kind == "UNKNOWN" or "outcome unknown" in msg:
        return "unknown"
    if grpc_code in ("DEADLINE_EXCEEDED", "UNKNOWN"):
        return "unknown"
    if mode == "strict":
        if grpc_code is None:
            return "failed"
        return "failed" if grpc_code in ("UNAVAILABLE", "RESOURCE_EXHAUSTED",
                                         "INVALID_ARGUMENT") else "unknown"
    m = _FORWARD.match(msg)
    if m:
        msg = m.group(1).strip()
    return "failed" if any(p.match(msg) for p in _NOT_APPLIED) else "unknown"


class ProtocolError(Exception):
    pass


# --- text protocol ------------------------------------------------------------------------

class _LineConn:
    def __init__(self, host, port, timeout_s):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.settimeout(timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                return line.rstrip(b"\r").decode("utf-8", "replace")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buf += chunk

    def readexact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class _SocketClient:
    """Shared by the text and RESP clients: one connection, one request at a time; any
    transport trouble closes it (a late reply must never be read as the next one's)."""

    def __init__(self, host, port, timeout_s, error_mode):
        self.host, self.port, self.timeout_s, self.error_mode = host, port, timeout_s, error_mode
        self.conn = None

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def _call(self, payload, parse, is_write):
        if self.conn is None:
            try:
                self.conn = _LineConn(self.host, self.port, self.timeout_s)
            except OSError as e:
                return Reply("failed", error=f"connect: {e}")  # nothing was sent
        try:
            self.conn.send(payload)
        except OSError as e:
            self.close()
            # Part of the request may have reached the server.
            return Reply("unknown" if is_write else "failed", error=f"send: {e}")
        try:
            return parse(self.conn)
        except (OSError, ConnectionError, ProtocolError, ValueError) as e:
            self.close()
            return Reply("unknown", error=f"{type(e).__name__}: {e}")

    def _err(self, text, is_write):
        self.close()  # a fresh connection after every error: simple and safe
        if not is_write:
            return Reply("failed", error=text)  # a read that failed changed nothing
        return Reply(classify_server_error(text, None, self.error_mode), error=text)


def _session_prefix(session, resp=False):
    """The SESSION command that makes the next write carry `session` = (id, sequence)."""
    if session is None:
        return b""
    if resp:
        return resp_encode("SESSION", str(session[0]), str(session[1]))
    return f"SESSION {session[0]} {session[1]}\n".encode()


def _session_ok(c, session, resp=False):
    """Reads SESSION's reply (if one was sent); raises ProtocolError unless it is OK."""
    if session is None:
        return
    line = c.readline()
    if line != ("+OK" if resp else "OK"):
        raise ProtocolError(f"unexpected reply to SESSION: {line!r}")


class TextClient(_SocketClient):
    proto = "text"

    def put(self, key, value, session=None):
        def parse(c):
            _session_ok(c, session)
            line = c.readline()
            if line == "OK":
                return Reply("ok")
            if line.startswith("ERR"):
                return self._err(line[3:].strip(), True)
            raise ProtocolError(f"unexpected reply to SET: {line!r}")
        return self._call(_session_prefix(session) + f"SET {key} {value}\n".encode(), parse,
                          True)

    def get(self, key):
        def parse(c):
            line = c.readline()
            if line == "KEY NOT FOUND":
                return Reply("ok", None)
            if line.startswith("ERR ") or line == "ERR":
                return self._err(line[3:].strip(), False)
            return Reply("ok", line)
        return self._call(f"GET {key}\n".encode(), parse, False)

    def delete(self, key, session=None):
        def parse(c):
            _session_ok(c, session)
            line = c.readline()
            if line == "OK":
                return Reply("ok", True)
            if line == "KEY NOT FOUND":
                return Reply("ok", False)
            if line.startswith("ERR"):
                return self._err(line[3:].strip(), True)
            raise ProtocolError(f"unexpected reply to DEL: {line!r}")
        return self._call(_session_prefix(session) + f"DEL {key}\n".encode(), parse, True)

    def mget(self, keys):
        def parse(c):
            out = []
            for _ in keys:
                line = c.readline()
                if line.startswith("ERR ") or line == "ERR":
                    return self._err(line[3:].strip(), False)
                out.append(None if line == "KEY NOT FOUND" else line)
            return Reply("ok", out)
        return self._call(("MGET " + " ".join(keys) + "\n").encode(), parse, False)


# --- RESP2 --------------------------------------------------------------------------------

def resp_encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _RespError(Exception):
    pass


def resp_read(c):
    line = c.readline()
    if not line:
        raise ProtocolError("empty RESP line")
    t, rest = line[0], line[1:]
    if t == "+":
        return rest
    if t == "-":
        raise _RespError(rest)
    if t == ":":
        return int(rest)
    if t == "$":
        n = int(rest)
        if n < 0:
            return None
        data = c.readexact(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if t == "*":
        n = int(rest)
        if n < 0:
            return None
        return [resp_read(c) for _ in range(n)]
    raise ProtocolError(f"bad RESP reply {line!r}")


class RespClient(_SocketClient):
    proto = "resp"

    def _resp(self, args, on_value, is_write, session=None):
        def parse(c):
            _session_ok(c, session, resp=True)
            try:
                v = resp_read(c)
            except _RespError as e:
                text = str(e)
                if text.startswith("ERR"):
                    text = text[3:].strip()
                return self._err(text, is_write)
            return on_value(v)
        return self._call(_session_prefix(session, resp=True) + resp_encode(*args), parse,
                          is_write)

    def put(self, key, value, session=None):
        def ok(v):
            if v != "OK":
                raise ProtocolError(f"unexpected reply to SET: {v!r}")
            return Reply("ok")
        return self._resp(("SET", key, value), ok, True, session)

    def get(self, key):
        return self._resp(("GET", key), lambda v: Reply("ok", v), False)

    def delete(self, key, session=None):
        def ok(v):
            if not isinstance(v, int):
                raise ProtocolError(f"unexpected reply to DEL: {v!r}")
            return Reply("ok", v > 0)
        return self._resp(("DEL", key), ok, True, session)

    def mget(self, keys):
        def ok(v):
            if not isinstance(v, list) or len(v) != len(keys):
                raise ProtocolError(f"unexpected reply to MGET: {v!r}")
            return Reply("ok", v)
        return self._resp(("MGET",) + tuple(keys), ok, False)


# --- etcd v3 gRPC (hand-encoded protobuf) -------------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def pb_uint(field, n):
    return _varint(field << 3) + _varint(n)


def pb_decode(buf):
    """{field: [values]}: ints for varints, bytes for length-delimited fields."""
    out = {}
    i, n = 0, len(buf)
    while i < n:
        key, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
        elif wt == 2:
            ln, shift = 0, 0
            while True:
                b = buf[i]
                i += 1
                ln |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            v = bytes(buf[i:i + ln])
            i += ln
        elif wt == 1:
            v = buf[i:i + 8]
            i += 8
        elif wt == 5:
            v = buf[i:i + 4]
            i += 4
        else:
            raise ProtocolError(f"unsupported wire type {wt}")
        out.setdefault(field, []).append(v)
    return out


_GRPC_CHANNEL_OPTIONS = [
    ("grpc.enable_retries", 0),  # no transparent retries: every attempt is one op
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_http_proxy", 0),
]

# Transport errors raised by the client's own gRPC library before the request left: the
# write was never sent.
_NOT_SENT = re.compile(r"failed to connect to all addresses|Connection refused|"
                       r"DNS resolution failed|no route to host", re.I)


# Errors of the client's own transport on a call already sent (the server may have run it):
# not a claim of the server's.
_TRANSPORT = re.compile(r"^(recvmsg:|sendmsg:)?\s*(Socket closed|Connection reset by peer|"
                        r"Broken pipe|GOAWAY|keepalive|Connection timed out|Stream removed)",
                        re.I)


class EtcdClient:
    proto = "etcd"

    def __init__(self, host, port, timeout_s, error_mode):
        if grpc is None:
            raise RuntimeError("python3-grpcio is not installed (apt-get install python3-grpcio)")
        self.timeout_s, self.error_mode = timeout_s, error_mode
        self.target = f"{host}:{port}"
        self.channel = grpc.insecure_channel(self.target, options=_GRPC_CHANNEL_OPTIONS)
        m = lambda name: self.channel.unary_unary(name)  # noqa: E731  bytes in, bytes out
        self._put = m("/etcdserverpb.KV/Put")
        self._range = m("/etcdserverpb.KV/Range")
        self._delete = m("/etcdserverpb.KV/DeleteRange")
        self._status = m("/etcdserverpb.Maintenance/Status")

    def close(self):
        self.channel.close()

    def _rpc(self, stub, request, is_write, session=None):
        metadata = None
        if session is not None:
            metadata = (("raftkv-session-id", str(session[0])),
                        ("raftkv-session-sequence", str(session[1])))
        try:
            return stub(request, timeout=self.timeout_s, metadata=metadata), None
        except grpc.RpcError as e:
            code = e.code().name if e.code() else "UNKNOWN"
            details = e.details() or ""
            text = f"{code}: {details}"
            if not is_write:
                return None, Reply("failed", error=text)
            if code == "UNAVAILABLE" and _NOT_SENT.search(details):
                return None, Reply("failed", error=text)
            if code in ("DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "INTERNAL"):
                # The client's own deadline, or a broken stream: the request may have run.
                if code != "DEADLINE_EXCEEDED" or "outcome unknown" not in details:
                    return None, Reply("unknown", error=text)
            return None, Reply(classify_server_error(details, code, self.error_mode),
                               error=text)

    def put(self, key, value, session=None):
        resp, err = self._rpc(self._put, pb_bytes(1, key) + pb_bytes(2, value), True, session)
        return err or Reply("ok")

    def get(self, key):
        resp, err = self._rpc(self._range, pb_bytes(1, key), False)
        if err:
            return err
        kvs = pb_decode(resp).get(2, [])
        if not kvs:
            return Reply("ok", None)
        if len(kvs) != 1:
            return Reply("unknown", error=f"Range of one key returned {len(kvs)} kvs")
        kv = pb_decode(kvs[0])
        if kv.get(1, [b""])[0] != key.encode():
            return Reply("unknown", error="Range returned another key")
        return Reply("ok", kv.get(5, [b""])[0].decode("utf-8", "replace"))

    def range_all(self, prefix):
        """Every key with `prefix`: {key: value}, or a failed Reply."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        resp, err = self._rpc(self._range, pb_bytes(1, prefix) + pb_bytes(2, end), False)
        if err:
            return err
        out = {}
        for raw in pb_decode(resp).get(2, []):
            kv = pb_decode(raw)
            out[kv.get(1, [b""])[0].decode("utf-8", "replace")] = \
                kv.get(5, [b""])[0].decode("utf-8", "replace")
        return Reply("ok", out)

    def delete(self, key, session=None):
        resp, err = self._rpc(self._delete, pb_bytes(1, key), True, session)
        if err:
            return err
        deleted = pb_decode(resp).get(2, [0])[0]
        return Reply("ok", deleted > 0)

    def mget(self, keys):
        raise NotImplementedError("MGET is sent over text and RESP only")

    def status(self):
        """Maintenance.Status: dict(member, leader, term, commit, applied) or a failed Reply."""
        resp, err = self._rpc(self._status, b"", False)
        if err:
            return err
        d = pb_decode(resp)
        header = pb_decode(d.get(1, [b""])[0])
        return Reply("ok", {
            "member": header.get(2, [0])[0], "leader": d.get(4, [0])[0],
            "commit": d.get(5, [0])[0], "term": d.get(6, [0])[0],
            "applied": d.get(7, [0])[0], "revision": header.get(3, [0])[0],
        })


CLIENTS = {"text": TextClient, "resp": RespClient, "etcd": EtcdClient}
