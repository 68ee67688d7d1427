#!/usr/bin/env python3
"""Smoke test for the peers started by scripts/peers (python3 stdlib only).

Reads <state>/env (MAILSCOPE_PEERS_DIR or <repo>/.peers) and checks every peer the way
a client would: greetings, EHLO before and after STARTTLS, AUTH mechanisms, a wrong
password, relaying to smtp-sink, Postfix's bare-LF rejection, IMAP/POP3 logins
(including SCRAM, which smtplib cannot do). Prints what the servers said, then
"N passed, N failed"; exits non-zero on any failure.
"""

import base64
import hashlib
import hmac
import imaplib
import os
import poplib
import smtplib
import socket
import ssl
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("MAILSCOPE_PEERS_DIR", REPO / ".peers")).resolve()


def load_env():
    env = {}
    for line in (STATE / "env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


ENV = load_env()
CTX = ssl.create_default_context(cafile=ENV["PEER_CA"])
NAME = ENV["PEER_TLS_NAME"]
USER, PASSWORD = ENV["PEER_USER"], ENV["PEER_PASSWORD"]
RESULTS = []


def hostport(key):
    host, port = ENV[key].rsplit(":", 1)
    return host, int(port)


def check(title):
    def wrap(fn):
        start = time.monotonic()
        try:
            fn()
            RESULTS.append((title, True))
            print(f"ok   {title} ({time.monotonic() - start:.2f}s)")
        except Exception:  # noqa: BLE001 - report every failure, keep going
            RESULTS.append((title, False))
            print(f"FAIL {title}")
            traceback.print_exc(file=sys.stdout)
        return fn
    return wrap


def show(label, text):
    print(f"     {label}: {text}")


def ehlo_text(smtp):
    code, msg = smtp.ehlo("client.mailscope.test")
    assert code == 250, (code, msg)
    return msg.decode().replace("\n", " | ")


def smtp_plain(key):
    host, port = hostport(key)
    s = smtplib.SMTP(host, port, timeout=10)
    return s


def smtp_tls(key, implicit):
    host, port = hostport(key)
    if implicit:
        s = smtplib.SMTP_SSL(host, port, timeout=10, context=CTX)
        # smtplib uses the host string for SNI/verification; it is 127.0.0.1, which the
        # leaf's IP SAN covers.
        return s
    s = smtplib.SMTP(host, port, timeout=10)
    s.ehlo("client.mailscope.test")
    s.starttls(context=CTX)
    return s


def sink_files():
    return set(Path(ENV["PEER_SMTP_SINK_DUMP_DIR"]).glob("*"))


def wait_for_sink(before, marker, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for f in sink_files() - before:
            if marker.encode() in f.read_bytes():
                return f
        time.sleep(0.2)
    raise AssertionError(f"message {marker} never reached smtp-sink")


def send_and_expect_relay(s, label):
    marker = f"mailscope-{label}-{time.time_ns()}"
    before = sink_files()
    msg = f"From: {USER}\r\nTo: bob@example.test\r\nSubject: {marker}\r\n\r\nhello\r\n"
    refused = s.sendmail(USER, ["bob@example.test"], msg)
    assert not refused, refused
    f = wait_for_sink(before, marker)
    show("relayed to smtp-sink", f.name)


# ------------------------------------------------------------------ smtp-sink


@check("smtp-sink answers")
def _():
    s = smtp_plain("PEER_SMTP_SINK")
    show("EHLO", ehlo_text(s))
    s.quit()


# ------------------------------------------------------------------ Dovecot submission

for key, implicit in (("PEER_SUBMISSION", False), ("PEER_SUBMISSIONS", True)):
    label = "submissions (implicit TLS)" if implicit else "submission (STARTTLS)"

    if not implicit:
        @check(f"{label}: EHLO before TLS offers STARTTLS")
        def _(key=key):
            s = smtp_plain(key)
            text = ehlo_text(s)
            show("EHLO before STARTTLS", text)
            assert "STARTTLS" in text
            s.quit()

    @check(f"{label}: EHLO after TLS offers all mechanisms")
    def _(key=key, implicit=implicit):
        s = smtp_tls(key, implicit)
        text = ehlo_text(s)
        show("EHLO after TLS", text)
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"):
            assert mech in text, mech
        s.quit()

    for mech in ("PLAIN", "LOGIN", "CRAM-MD5"):
        @check(f"{label}: AUTH {mech} as {USER}")
        def _(key=key, implicit=implicit, mech=mech):
            s = smtp_tls(key, implicit)
            s.ehlo("client.mailscope.test")
            s.user, s.password = USER, PASSWORD  # what smtplib's auth_* helpers read
            code, msg = s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")),
                               initial_response_ok=False)
            show(f"AUTH {mech}", f"{code} {msg.decode()}")
            assert code == 235
            s.quit()

    @check(f"{label}: wrong password gets 535")
    def _(key=key, implicit=implicit):
        s = smtp_tls(key, implicit)
        s.ehlo("client.mailscope.test")
        try:
            s.login(USER, "wrong-password")
        except smtplib.SMTPAuthenticationError as e:
            show("wrong password", f"{e.smtp_code} {e.smtp_error.decode()}")
            assert e.smtp_code == 535
        else:
            raise AssertionError("wrong password accepted")
        s.quit()

    @check(f"{label}: message to bob@example.test relayed")
    def _(key=key, implicit=implicit):
        s = smtp_tls(key, implicit)
        s.login(USER, PASSWORD)
        send_and_expect_relay(s, "submission")
        s.quit()


# ------------------------------------------------------------------ Postfix


@check("postfix: EHLO before TLS offers STARTTLS, no AUTH")
def _():
    s = smtp_plain("PEER_POSTFIX")
    text = ehlo_text(s)
    show("EHLO before STARTTLS", text)
    assert "STARTTLS" in text and "AUTH" not in text
    s.quit()


@check("postfix: EHLO after STARTTLS offers AUTH; AUTH PLAIN via Dovecot works")
def _():
    s = smtp_tls("PEER_POSTFIX", False)
    text = ehlo_text(s)
    show("EHLO after STARTTLS", text)
    assert "AUTH" in text
    code, msg = s.login(USER, PASSWORD)
    show("AUTH", f"{code} {msg.decode()}")
    send_and_expect_relay(s, "postfix-auth")
    s.quit()


@check("postfix: wrong password gets 535")
def _():
    s = smtp_tls("PEER_POSTFIX", False)
    try:
        s.login(USER, "wrong-password")
    except smtplib.SMTPAuthenticationError as e:
        show("wrong password", f"{e.smtp_code} {e.smtp_error.decode()}")
        assert e.smtp_code == 535
    else:
        raise AssertionError("wrong password accepted")
    s.quit()


@check("postfix: CRLF message accepted and relayed")
def _():
    s = smtp_plain("PEER_POSTFIX")
    send_and_expect_relay(s, "postfix-crlf")
    s.quit()


def raw_smtp(sock, line=None):
    if line is not None:
        sock.sendall(line)
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        last = data.rstrip(b"\r\n").split(b"\r\n")[-1]
        if len(last) >= 4 and last[3:4] == b" " and data.endswith(b"\r\n"):
            break
    return data.decode().strip()


@check("postfix: bare-LF DATA body refused with 550 5.5.2")
def _():
    with socket.create_connection(hostport("PEER_POSTFIX"), timeout=10) as sock:
        show("S", raw_smtp(sock))
        raw_smtp(sock, b"EHLO client.mailscope.test\r\n")
        show("MAIL", raw_smtp(sock, b"MAIL FROM:<a@example.test>\r\n"))
        show("RCPT", raw_smtp(sock, b"RCPT TO:<b@example.test>\r\n"))
        show("DATA", raw_smtp(sock, b"DATA\r\n"))
        reply = raw_smtp(sock, b"Subject: x\nhello\n\r\n.\r\n")
        show("after final dot", reply)
        assert reply.startswith("550 5.5.2") and "bare <LF>" in reply, reply


# ------------------------------------------------------------------ IMAP / POP3


class Scram:
    """Minimal RFC 5802 client, enough to prove the server side works."""

    def __init__(self, hashname, user, password):
        self.h, self.user, self.password = hashname, user, password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.step = 0

    def __call__(self, challenge):
        self.step += 1
        if self.step == 1:
            self.bare = f"n={self.user},r={self.nonce}"
            return ("n,," + self.bare).encode()
        if self.step == 2:
            server_first = challenge.decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            assert attrs["r"].startswith(self.nonce)
            salted = hashlib.pbkdf2_hmac(self.h, self.password.encode(),
                                         base64.b64decode(attrs["s"]), int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", self.h).digest()
            stored = hashlib.new(self.h, client_key).digest()
            final_bare = f"c=biws,r={attrs['r']}"
            auth_msg = f"{self.bare},{server_first},{final_bare}".encode()
            sig = hmac.new(stored, auth_msg, self.h).digest()
            proof = bytes(a ^ b for a, b in zip(client_key, sig))
            server_key = hmac.new(salted, b"Server Key", self.h).digest()
            self.expected = base64.b64encode(hmac.new(server_key, auth_msg, self.h).digest())
            return f"{final_bare},p={base64.b64encode(proof).decode()}".encode()
        assert challenge == b"v=" + self.expected, "server signature mismatch"
        return b""


@check("imap: greeting before STARTTLS (what is offered on loopback)")
def _():
    host, port = hostport("PEER_IMAP")
    m = imaplib.IMAP4(host, port, timeout=10)
    show("greeting", m.welcome.decode())
    show("CAPABILITY before STARTTLS", " ".join(m.capabilities))
    m.starttls(ssl_context=CTX)
    m.login(USER, PASSWORD)
    m.logout()


@check("imaps: LOGIN works")
def _():
    host, port = hostport("PEER_IMAPS")
    m = imaplib.IMAP4_SSL(host, port, ssl_context=CTX, timeout=10)
    typ, data = m.login(USER, PASSWORD)
    show("LOGIN", f"{typ} {data[0].decode()}")
    typ, data = m.select("INBOX")
    show("SELECT INBOX", f"{typ} {data}")
    m.logout()


for mech, hname in (("SCRAM-SHA-1", "sha1"), ("SCRAM-SHA-256", "sha256")):
    @check(f"imaps: AUTHENTICATE {mech}")
    def _(mech=mech, hname=hname):
        host, port = hostport("PEER_IMAPS")
        m = imaplib.IMAP4_SSL(host, port, ssl_context=CTX, timeout=10)
        typ, data = m.authenticate(mech, Scram(hname, USER, PASSWORD))
        show(mech, f"{typ} {data[0].decode()}")
        m.logout()


@check("imaps: wrong password refused")
def _():
    host, port = hostport("PEER_IMAPS")
    m = imaplib.IMAP4_SSL(host, port, ssl_context=CTX, timeout=10)
    try:
        m.login(USER, "wrong-password")
    except imaplib.IMAP4.error as e:
        show("wrong password", str(e))
    else:
        raise AssertionError("wrong password accepted")
    m.logout()


@check("pop3s: login works")
def _():
    host, port = hostport("PEER_POP3S")
    p = poplib.POP3_SSL(host, port, context=CTX, timeout=10)
    show("greeting", p.getwelcome().decode())
    p.user(USER)
    show("PASS", p.pass_(PASSWORD).decode())
    show("STAT", str(p.stat()))
    p.quit()


@check("pop3: STLS then login works")
def _():
    host, port = hostport("PEER_POP3")
    p = poplib.POP3(host, port, timeout=10)
    show("CAPA before STLS", " ".join(p.capa()))
    p.stls(context=CTX)
    p.user(ENV["PEER_ALT_USER"])
    show("PASS (alt user)", p.pass_(ENV["PEER_ALT_PASSWORD"]).decode())
    p.quit()


@check("expired certificate is expired and chains to the CA")
def _():
    import subprocess
    out = subprocess.run(["openssl", "verify", "-CAfile", ENV["PEER_CA"], ENV["PEER_EXPIRED_CERT"]],
                         capture_output=True, text=True)
    show("openssl verify", (out.stdout + out.stderr).strip().replace("\n", " | "))
    assert out.returncode != 0 and "expired" in out.stdout + out.stderr


passed = sum(ok for _, ok in RESULTS)
failed = len(RESULTS) - passed
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
