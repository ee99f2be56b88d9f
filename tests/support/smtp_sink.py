#!/usr/bin/env python3
"""A real SMTP server for Rapport's tests (aiosmtpd): stores every accepted message as a file.

Usage: smtp_sink.py --port N --dir DIR [--copy-to MAILDIR_FOLDER] [--reject5 SUBSTR]... [--tempfail4 SUBSTR]...

- Each accepted message is written to DIR/<n>.eml (written to a temp name, then renamed), with
  the envelope in the first line: `X-Envelope: FROM -> TO[,TO]`.
- --copy-to: also delivers the message into that Maildir folder's new/ (owned like the folder)
  BEFORE answering 250, as providers that keep SMTP-sent mail in Sent do.
- --reject5 / --tempfail4: recipients containing SUBSTR get 550 / 451 at RCPT.
- Writes DIR/ready when listening. Stops on SIGTERM.
"""
import argparse
import asyncio
import itertools
import os
import signal
import time

from aiosmtpd.smtp import SMTP

counter = itertools.count(1)


class Sink:
    def __init__(self, args):
        self.args = args

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for s in self.args.reject5:
            if s in address:
                return "550 5.1.1 <%s>: no such user" % address
        for s in self.args.tempfail4:
            if s in address:
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode()
        n = next(counter)
        name = "%08d-%d" % (n, os.getpid())
        head = ("X-Envelope: %s -> %s\r\n" % (envelope.mail_from, ",".join(envelope.rcpt_tos))).encode()
        tmp = os.path.join(self.args.dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(head + data)
        if self.args.copy_to:
            st = os.stat(self.args.copy_to)
            base = "%d.M%06dP%dQ%d.sink" % (int(time.time()), n, os.getpid(), n)
            t2 = os.path.join(self.args.copy_to, "tmp", base)
            with open(t2, "wb") as f:
                f.write(data)
            os.chown(t2, st.st_uid, st.st_gid)
            os.chmod(t2, 0o600)
            os.rename(t2, os.path.join(self.args.copy_to, "new", base))
        os.rename(tmp, os.path.join(self.args.dir, name + ".eml"))
        return "250 2.0.0 accepted"


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--copy-to")
    p.add_argument("--reject5", action="append", default=[])
    p.add_argument("--tempfail4", action="append", default=[])
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    handler = Sink(args)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", data_size_limit=10_000_000),
        host="127.0.0.1",
        port=args.port,
    )
    with open(os.path.join(args.dir, "ready"), "w") as f:
        f.write(str(os.getpid()))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
