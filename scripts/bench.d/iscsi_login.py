"""A minimal iSCSI initiator: just enough login (RFC 7143 11.12, 11.13) to hold sessions open.

Used by scripts/bench to open many sessions and to time "start to first login". No data
phase, no digests, no authentication. Every wait is bounded by a socket timeout.
"""

import socket
import struct

INITIATOR = "iqn.2026-11.org.esos:bench"
#: Longest a login step may take before the session counts as failed.
STEP_TIMEOUT_S = 10.0
#: A login completes in at most this many request/response exchanges.
MAX_STEPS = 4
#: Largest login response data segment accepted from the target.
MAX_RESPONSE_DATA = 65536
BHS_LEN = 48


class LoginError(Exception):
    pass


def _keys(pairs):
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise LoginError("connection closed by target")
        buf += chunk
    return bytes(buf)


def _login_pdu(isid, csg, nsg, cmdsn, exp_statsn, data):
    # Opcode 0x03 with the immediate bit; flags: Transit, CSG (bits 3-2), NSG (bits 1-0).
    flags = 0x80 | (csg << 2) | nsg
    dlen = len(data)
    bhs = struct.pack(
        ">BBBB B3s 6sH I HH I I 16x",
        0x43, flags, 0, 0,
        0, dlen.to_bytes(3, "big"),
        isid, 0,          # TSIH 0: a new session
        1,                # ITT
        0, 0,             # CID, reserved
        cmdsn, exp_statsn,
    )
    assert len(bhs) == BHS_LEN
    pad = (-dlen) % 4
    return bhs + data + b"\0" * pad


def login(host, port, target, isid, initiator=INITIATOR):
    """Opens a TCP connection and logs in to `target`; returns the connected socket."""
    sock = socket.create_connection((host, port), timeout=STEP_TIMEOUT_S)
    try:
        stage = 0
        exp_statsn = 0
        for _ in range(MAX_STEPS):
            if stage == 0:
                data = _keys([
                    ("InitiatorName", initiator),
                    ("TargetName", target),
                    ("SessionType", "Normal"),
                    ("AuthMethod", "None"),
                ])
                nsg = 1
            else:
                data = _keys([
                    ("HeaderDigest", "None"),
                    ("DataDigest", "None"),
                    ("MaxRecvDataSegmentLength", "262144"),
                    ("InitialR2T", "No"),
                    ("ImmediateData", "Yes"),
                    ("ErrorRecoveryLevel", "0"),
                ])
                nsg = 3
            sock.sendall(_login_pdu(isid, stage, nsg, 0, exp_statsn, data))
            bhs = _recv_exact(sock, BHS_LEN)
            if bhs[0] & 0x3F != 0x23:
                raise LoginError(f"unexpected opcode {bhs[0]:#x}")
            dlen = int.from_bytes(bhs[5:8], "big")
            if dlen > MAX_RESPONSE_DATA:
                raise LoginError(f"login response data of {dlen} bytes")
            _recv_exact(sock, bhs[4] * 4 + dlen + (-dlen) % 4)
            status_class, detail = bhs[36], bhs[37]
            if status_class != 0:
                raise LoginError(f"login refused: class {status_class} detail {detail}")
            exp_statsn = struct.unpack(">I", bhs[24:28])[0] + 1
            transit, resp_nsg = bhs[1] & 0x80, bhs[1] & 0x03
            if transit and resp_nsg == 3:
                sock.settimeout(None)
                return sock
            if transit:
                stage = resp_nsg
        raise LoginError("login did not reach full feature phase")
    except BaseException:
        sock.close()
        raise


def isid_for(n):
    """A distinct random-qualifier ISID (type 10b, RFC 7143 11.12.5) per session number."""
    return bytes([0x80, 0x00]) + n.to_bytes(4, "big")
