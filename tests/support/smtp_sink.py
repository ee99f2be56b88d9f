#!/usr/bin/env python3
"""A real SMTP server for Rapport's tests (aiosmtpd): stores every accepted message as a file.

Usage: smtp_sink.py --port N --dir DIR [--copy-to MAILDIR_FOLDER] [--reject5 SUBSTR]... [--tempfail4 SUBSTR]...
                    [--login USER:PASSWORD] [--introspect URL] [--tls CERT KEY] [--implicit-tls]

- Each accepted message is written to DIR/<n>.eml (written to a temp name, then renamed), with
  the envelope in the first line: `X-Envelope: FROM -> TO[,TO]`.
- --copy-to: also delivers the message into that Maildir folder's new/ (owned like the folder)
  BEFORE answering 250, as providers that keep SMTP-sent mail in Sent do.
- --reject5 / --tempfail4: recipients containing SUBSTR get 550 / 451 at RCPT.
- --login: AUTH is required (over plain TCP: these are loopback tests); PLAIN and LOGIN
  accept USER with PASSWORD. Each login is appended to DIR/logins as `MECHANISM USER`.
- --introspect: AUTH is required; XOAUTH2 accepts a bearer token that the OAuth2 provider's
  RFC 7662 introspection endpoint at URL calls active for the user it names (as Gmail and
  Microsoft 365 check their own tokens); a refused token gets 535 and the RFC 7628 error
  challenge first.
- DIR/tls gets a line per accepted message: the TLS version it came over, or `none`.
- --tls: offers STARTTLS (and requires it before MAIL) with that certificate and key;
  with --implicit-tls, TLS from the first byte instead (port 465 style).
- Writes DIR/ready when listening. Stops on SIGTERM.
"""
import argparse
import asyncio
import base64
import itertools
import json
import os
import signal
import ssl
import time
import urllib.parse
import urllib.request

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

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

    def logged_in(self, mechanism, user):
        with open(os.path.join(self.args.dir, "logins"), "a") as f:
            f.write("%s %s\n" % (mechanism, user))

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        """PLAIN and LOGIN against --login."""
        if not self.args.login or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, _, password = self.args.login.partition(":")
        if auth_data.login.decode() == user and auth_data.password.decode() == password:
            self.logged_in(mechanism, user)
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    async def auth_XOAUTH2(self, server, args):
        if not self.args.introspect:
            await server.push("504 5.5.4 Unrecognized authentication type")
            return AuthResult(success=False, handled=True)
        if len(args) == 2:
            raw = args[1]
        else:
            answer = await server.challenge_auth("")
            raw = answer.decode() if isinstance(answer, bytes) else ""
            raw = base64.b64encode(raw.encode()).decode()
        try:
            fields = dict(
                f.split("=", 1) for f in base64.b64decode(raw).decode().split("\x01") if "=" in f
            )
            user, token = fields["user"], fields["auth"].removeprefix("Bearer ")
        except Exception:
            await server.push("501 5.5.2 Can't decode the XOAUTH2 string")
            return AuthResult(success=False, handled=True)
        body = urllib.parse.urlencode({"token": token}).encode()
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(
            None, lambda: json.load(urllib.request.urlopen(self.args.introspect, body, timeout=10))
        )
        if answer.get("active") and answer.get("username") == user:
            self.logged_in("XOAUTH2", user)
            return AuthResult(success=True)
        # RFC 7628 section 3.2.2: an error challenge, answered by an empty line, then 535.
        error = base64.b64encode(json.dumps({"status": "401", "schemes": "bearer"}).encode())
        await server.challenge_auth(error.decode(), encode_to_b64=False)
        return AuthResult(success=False, handled=False)

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
        tls = server.transport.get_extra_info("ssl_object")
        with open(os.path.join(self.args.dir, "tls"), "a") as f:
            f.write("%s\n" % (tls.version() if tls else "none"))
        os.rename(tmp, os.path.join(self.args.dir, name + ".eml"))
        return "250 2.0.0 accepted"


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--copy-to")
    p.add_argument("--reject5", action="append", default=[])
    p.add_argument("--tempfail4", action="append", default=[])
    p.add_argument("--login")
    p.add_argument("--introspect")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--implicit-tls", action="store_true")
    args = p.parse_args()
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls[0], args.tls[1])
    starttls = context if context and not args.implicit_tls else None
    loop = asyncio.get_running_loop()
    handler = Sink(args)
    auth = bool(args.login or args.introspect)
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="sink.test",
            data_size_limit=10_000_000,
            auth_required=auth,
            auth_require_tls=False,
            authenticator=handler.authenticate,
            tls_context=starttls,
            require_starttls=starttls is not None,
        ),
        host="127.0.0.1",
        port=args.port,
        ssl=context if args.implicit_tls else None,
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
