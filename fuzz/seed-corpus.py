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


def server_runs(name):
    """The golden's runs of S: lines, as bytes."""
    runs, last = [], None
    for line in (GOLDEN / f"{name}.txt").read_text().splitlines():
        kind = line[:3]
        if kind == "S: ":
            if last != "S":
                runs.append(b"")
            runs[-1] += unescape(line[3:])
        last = "S" if kind == "S: " else ("C" if kind == "C: " else "-")
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

# SASL (Mechanism::PREFERENCE order: SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN).
SCRAM256, SCRAM1, CRAM, PLAIN, LOGIN = range(5)
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
for mech, label in [(SCRAM256, "scram-sha-256"), (SCRAM1, "scram-sha-1"), (CRAM, "cram-md5"), (PLAIN, "plain"), (LOGIN, "login")]:
    # The round trip between our client and our server: user, authzid, password.
    write("sasl_server", f"roundtrip-{label}", framed(mech | 16, b"alice", b"", b"s3cret, =x"))
    write("sasl_server", f"roundtrip-authzid-{label}", framed(mech, b"alice", b"bob"))

write("escape", "eml", (GOLDEN / "000-newsletter-bare-lf.eml").read_bytes())
write("escape", "golden-text", (GOLDEN / "002-auth-cram-md5.txt").read_bytes()[:600])
write("escape", "all-bytes", bytes(range(256)))
write("escape", "escapes", rb"a\r\n\x41\\\0\t\xzz\q\ ")

for d in sorted(CORPUS.iterdir()):
    print(d.name, len(list(d.iterdir())))
