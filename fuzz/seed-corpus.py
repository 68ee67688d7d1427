#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ from the golden transcripts in
testdata/golden/smtp/ (and a few hand-made SASL exchanges). Run from anywhere:

    python3 fuzz/seed-corpus.py

It only adds or overwrites its own `seed-*` files; regression inputs (`crash-*`, `regress-*`)
and anything else in the corpus directories are left alone. Input layouts: fuzz/harness.rs.
"""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "testdata" / "golden" / "smtp"
POP3_GOLDEN = ROOT / "testdata" / "golden" / "pop3"
CORPUS = ROOT / "fuzz" / "corpus"
PASSWORD = b"pencil-Zq8#Lw2!vX"  # harness.rs PASSWORD
ESCAPES = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}


def unescape(text):
    out, i = bytearray(), 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            e = text[i + 1]
            if e == "x":
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
                continue
            out += ESCAPES[e]
            i += 2
            continue
        out += c.encode()
        i += 1
    return bytes(out)


def server_runs(name, side="S: ", golden=GOLDEN):
    """The golden's runs of S: (or C:) lines, as bytes."""
    runs, last = [], None
    for line in (golden / f"{name}.txt").read_text().splitlines():
        kind = line[:3]
        if kind == side:
            if last != "S":
                runs.append(b"")
            runs[-1] += unescape(line[3:])
        last = "S" if kind == side else ("C" if kind in ("S: ", "C: ") else "-")
    return runs


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def framed(selector, *messages):
    out = bytearray([selector])
    for m in messages:
        assert len(m) < 256, m
        out.append(len(m))
        out += m
    return bytes(out)


SESSIONS = {
    # golden: smtp_client flags (harness.rs client_options)
    "000-qmail-bare-lf-dropped": 64,  # raw data
    "000-postfix-bare-lf-550": 64,
    "001-starttls-auth-plain": 1 | (1 << 2),  # STARTTLS, AUTH PLAIN
    "001-starttls-auth-login": 1 | (2 << 2),  # STARTTLS, AUTH LOGIN
    "002-auth-cram-md5": 3 << 2,  # AUTH CRAM-MD5
    "002-helo-plain-session": 0,
    "rfc5321-d1-typical-transaction": 0,
    "rfc7677-scram-sha-256": 5 << 2,  # AUTH SCRAM-SHA-256
    "starttls-read-ahead-injection": 1,
    "broken-server-code-mismatch-bare-lf": 128,  # tiny reply limits
}

for name, flags in SESSIONS.items():
    runs = server_runs(name)
    stream = b"".join(runs)
    # cut: no quit-after (10 << 4); whole-ish chunks of 16, and byte by byte for some.
    write("smtp_client", name, bytes([flags, (10 << 4) | 15]) + stream)
    write("smtp_reply", name, stream)

for name, index in [
    ("001-starttls-auth-plain", 1),
    ("001-starttls-auth-plain", 3),
    ("002-auth-cram-md5", 1),
    ("broken-server-code-mismatch-bare-lf", 1),
    ("rfc5321-d1-typical-transaction", 1),
    ("rfc5321-d3-relay-step2", 1),
]:
    write("smtp_ehlo", f"{name}-{index}", server_runs(name)[index])

# SASL: the selector's bits 0-2 and 6-7 index Mechanism::ALL (harness.rs mech_index):
# SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN,
# XOAUTH2, OAUTHBEARER, EXTERNAL; index // 10 picks a variant (-PLUS: tls-exporter or
# tls-server-end-point; other SCRAMs: `n` or `y`).
def sel(index):
    return (index & 7) | ((index >> 3) << 6)


SCRAM256P, SCRAM1P, SCRAM256, SCRAM1, CRAM, PLAIN, LOGIN, XOAUTH2, OAUTHBEARER, EXTERNAL = (
    sel(i) for i in range(10)
)
SCRAM256P_EP, SCRAM1_Y = sel(10), sel(23)
NONCE = b"rOprNGfwEbeRWgbNEkqO"
write("sasl_client", "plain", framed(PLAIN | 16 | 32))
write("sasl_client", "plain-empty-challenge", framed(PLAIN | 8, b""))
write("sasl_client", "login", framed(LOGIN, b"Username:", b"Password:"))
write("sasl_client", "login-odd-prompts", framed(LOGIN | 32, b"User Name\0", b"Passwort:", b""))
write(
    "sasl_client",
    "cram-md5",
    framed(CRAM, b"<3321649310591144.1414795119@mail.server.net>"),
)
write(
    "sasl_client",
    "scram-sha-256",
    framed(
        SCRAM256 | 16 | 32,
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    ),
)
write(
    "sasl_client",
    "scram-sha-1",
    framed(
        SCRAM1 | 16,
        NONCE + b"3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=64",
        b"e=invalid-proof",
    ),
)
write("sasl_server", "plain", framed(PLAIN, b"admin\0user\0" + PASSWORD))
write("sasl_server", "login", framed(LOGIN | 8, b"user", PASSWORD))
write("sasl_server", "cram-md5", framed(CRAM | 8 | 16, b"user", b"0123456789abcdef0123456789abcdef"))
write(
    "sasl_server",
    "scram-sha-256",
    framed(SCRAM256, b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", b"c=biws,r=fyko,p=AAAA"),
)
write("sasl_server", "scram-sha-1-authzid", framed(SCRAM1 | 16, b"n,a=ad=2Cmin,n=us=3Der,r=x", b"pw"))
write(
    "sasl_client",
    "scram-sha-256-plus",
    framed(
        SCRAM256P | 16,
        NONCE + b"3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=64",
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    ),
)
write("sasl_client", "xoauth2-error", framed(XOAUTH2 | 16, b'{"status":"401","schemes":"bearer"}', b""))
write("sasl_client", "oauthbearer", framed(OAUTHBEARER | 16 | 32, b""))
write("sasl_client", "external", framed(EXTERNAL | 8 | 16, b""))
write("sasl_server", "scram-sha-256-plus", framed(SCRAM256P, b"p=tls-exporter,,n=user,r=fyko", b"c=cD10bHMtZXhwb3J0ZXIsLAE=,r=fyko,p=AAAA"))
write("sasl_server", "xoauth2", framed(XOAUTH2, b"user=user\x01auth=Bearer " + PASSWORD + b"\x01\x01"))
write("sasl_server", "oauthbearer", framed(OAUTHBEARER, b"n,a=user,\x01host=mx.example.test\x01port=587\x01auth=Bearer " + PASSWORD + b"\x01\x01"))
write("sasl_server", "external", framed(EXTERNAL, b"admin"))
for mech, label in [
    (SCRAM256P, "scram-sha-256-plus"),
    (SCRAM256P_EP, "scram-sha-256-plus-end-point"),
    (SCRAM1P, "scram-sha-1-plus"),
    (SCRAM256, "scram-sha-256"),
    (SCRAM1, "scram-sha-1"),
    (SCRAM1_Y, "scram-sha-1-y"),
    (CRAM, "cram-md5"),
    (PLAIN, "plain"),
    (LOGIN, "login"),
    (XOAUTH2, "xoauth2"),
    (OAUTHBEARER, "oauthbearer"),
    (EXTERNAL, "external"),
]:
    # The round trip between our client and our server: user, authzid, password.
    write("sasl_server", f"roundtrip-{label}", framed(mech | 16, b"alice", b"", b"s3cret, =x"))
    write("sasl_server", f"roundtrip-authzid-{label}", framed(mech, b"alice", b"bob"))

write("escape", "eml", (GOLDEN / "000-newsletter-bare-lf.eml").read_bytes())
write("escape", "golden-text", (GOLDEN / "002-auth-cram-md5.txt").read_bytes()[:600])
write("escape", "all-bytes", bytes(range(256)))
write("escape", "escapes", rb"a\r\n\x41\\\0\t\xzz\q\ ")

# POP3: the seed 002 session (testdata/golden/pop3/seed002.txt).
pop3 = b"".join(server_runs("seed002", golden=POP3_GOLDEN))
# pop3_response: [warn][line][response][multiline bits]; the 002 responses are single-line
# except TOP and RETR (the 6th and 7th).
write("pop3_response", "seed002", bytes([80, 90, 255, 0b0110_0000]) + pop3)
write("pop3_response", "seed002-small", bytes([10, 40, 20, 0b1010_1010]) + pop3)
write(
    "pop3_response",
    "multiline-stuffed",
    bytes([0, 0, 0, 0xFF]) + b"+OK [SYS/TEMP] x\r\n..a\r\nb\n.\r\n-ERR [IN-USE]\n+ok bad\r\n",
)
write(
    "pop3_response",
    "capa-list-stat",
    bytes([100, 95, 255, 0b0000_0101]) + b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n+OK 2 320\r\n+OK\r\n1 120\r\n2 200\r\n.\r\n",
)
# pop3_client: [flags][mode][cut]: USER/PASS, loopback, second action set (NOOP, TOP, RETR).
write("pop3_client", "seed002-userpass", bytes([1 << 4, 32 | 64 | 7, 15]) + pop3)
write("pop3_client", "seed002-bytewise", bytes([1 << 4, 32 | 64 | 7, 0]) + pop3)
apop_greeting = b"+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>\r\n"
write(
    "pop3_client",
    "apop",
    bytes([(2 << 4) | 4, 7, 3])
    + apop_greeting
    + b"+OK\r\nTOP\r\nUIDL\r\n.\r\n+OK maildrop has 2 messages\r\n+OK 2 320\r\n+OK\r\n1 120\r\n2 200\r\n.\r\n+OK\r\n1 a\r\n2 b\r\n.\r\n",
)
write(
    "pop3_client",
    "stls-sasl-plain",
    bytes([1 | (8 << 4), 7, 5])
    + b"+OK hi\r\n+OK\r\nSTLS\r\nSASL PLAIN\r\n.\r\n+OK go\r\n+OK\r\nSASL PLAIN SCRAM-SHA-256\r\n.\r\n+ \r\n+OK in\r\n+OK 0 0\r\n+OK bye\r\n",
)

# IMAP: the seed 002 session as in crates/mailscope-proto/src/imap/tests.rs.
HEADER = b"Return-Path: <>\r\nX-Real-To: user@mail.server.net\r\nSUBJECT: test mail from test subject\r\n\r\n"
imap = (
    b"* OK IMAP Server at mail.server.net ready\r\n"
    b"* CAPABILITY IMAP4 IMAP4REV1 ACL NAMESPACE UIDPLUS IDLE LITERAL+ QUOTA ID MULTIAPPEND CHILDREN BINARY LOGIN-REFERRALS STARTTLS AUTH=LOGIN AUTH=PLAIN AUTH=CRAM-MD5\r\na001 OK completed\r\n"
    b"a002 OK completed\r\n"
    b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $MDNSent)\r\n* OK [PERMANENTFLAGS (\\Answered \\Seen)] limited\r\n* 7214 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 306349424] UIDs valid\r\na003 OK [READ-WRITE] SELECT completed\r\n"
    + b"* 7214 FETCH (UID 9 BODY[HEADER] {%d}\r\n" % len(HEADER)
    + HEADER
    + b" FLAGS (\\Seen))\r\na004 OK completed\r\n"
    b"* BYE IMAP closing connection\r\na005 OK completed\r\n"
)
write("imap_framing", "seed002", bytes([90, 200, 255]) + imap)
write("imap_framing", "literals", bytes([30, 10, 60]) + b"* 1 FETCH (BODY[] {5}\r\nhello BODY[1] ~{3+}\r\nabc)\n* 2 FETCH {4}\r\nxyzwQ\r\na1 OK\r\n")
# imap_client: [flags][mode][cut]: LOGIN over plaintext allowed, SELECT, loopback.
write("imap_client", "seed002-login", bytes([(1 << 4) | 4, 128 | 7, 15]) + imap)
write("imap_client", "seed002-bytewise", bytes([(1 << 4) | 4, 128 | 7, 0]) + imap)
write("imap_client", "seed002-actions", bytes([(1 << 4) | 4, 128 | 32 | 16 | 7, 6]) + imap)
write("imap_client", "seed002-starttls", bytes([1 | (7 << 4), 7, 9]) + imap)

# smtp_server: [flags][mode][cut] + the goldens' client bytes (C: lines).
for name, flags, mode in [
    ("001-starttls-auth-plain", 0, 0),
    ("001-starttls-auth-login", 0, 1),
    ("002-auth-cram-md5", 4, 1),
    ("rfc7677-scram-sha-256", 4, 0),
    ("rfc5321-d1-typical-transaction", 16, 0),
    ("000-qmail-bare-lf-dropped", 1 << 6, 0),
    ("000-postfix-bare-lf-550", 2 << 6, 16),
    ("rfc3030-bdat-simple-chunking", 0, 0),
    ("rfc2033-lmtp-per-recipient", 1, 0),
    ("pipelining-one-recipient-refused", 32, 0),
]:
    client = b"".join(server_runs(name, side="C: "))
    write("smtp_server", name, bytes([flags, mode, 255]) + client)
write("smtp_server", "002-auth-cram-md5-bytewise", bytes([4, 1, 0]) + b"".join(server_runs("002-auth-cram-md5", side="C: ")))

for d in sorted(CORPUS.iterdir()):
    print(d.name, len(list(d.iterdir())))
