#!/usr/bin/env python3
"""A tiny aiosmtpd server that stores every message in a Maildir, crash-safely, the way one
would write it in a hurry: the comparison point for `mailscope sink` in bench/sink-vs-smtp-sink.

    aiosmtpd_maildir.py HOST PORT MAILDIR

Each message is written to MAILDIR/tmp/<name>, fsynced, renamed into MAILDIR/new/ and the
directory fsynced before the 250 reply (the same durability `mailscope sink` gives). One
process, one asyncio event loop, file I/O done inline as aiosmtpd handlers usually do.
Prints "ready HOST:PORT" on stdout once listening; stops on SIGTERM or SIGINT.
"""

import asyncio
import os
import signal
import socket
import sys
import time

from aiosmtpd.smtp import SMTP


class MaildirHandler:
    def __init__(self, root):
        self.root = root
        for d in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")
        self.counter = 0
        self.new_fd = os.open(os.path.join(root, "new"), os.O_RDONLY)

    async def handle_DATA(self, server, session, envelope):
        self.counter += 1
        ns = time.time_ns()
        name = "%d.M%06dP%dQ%d.%s" % (ns // 10**9, ns // 1000 % 10**6, os.getpid(), self.counter, self.host)
        tmp = os.path.join(self.root, "tmp", name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(envelope.original_content)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(self.root, "new", name))
        os.fsync(self.new_fd)
        return "250 2.0.0 Ok: queued as " + name


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: aiosmtpd_maildir.py HOST PORT MAILDIR")
    host, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    handler = MaildirHandler(root)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, hostname="aiosmtpd.localhost", data_size_limit=64 * 1024 * 1024),
            host,
            port,
            backlog=1024,
        )
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    print("ready %s:%d" % (host, port), flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
