#!/usr/bin/env python3
"""A webhook endpoint over https for test_https.c.

Usage: https_receiver.py CERT KEY SECRET FAILS OUTFILE PORTFILE

Listens on 127.0.0.1 on a free port (written to PORTFILE), answers the
first FAILS POSTs with 500 and the rest with 204, and appends one line per
request to OUTFILE: "<Ordertrack-Delivery> <status sent> <signature ok 1|0>
<seq in the body>".  The signature is checked as docs/NOTIFICATIONS.md
says: HMAC-SHA256 of "<t>.<body>" with SECRET.
"""
import hashlib
import hmac
import http.server
import json
import ssl
import sys

cert, key, secret, fails, outfile, portfile = sys.argv[1:7]
state = {"fails": int(fails)}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sig = self.headers.get("Ordertrack-Signature", "")
        parts = dict(p.split("=", 1) for p in sig.split(",") if "=" in p)
        want = hmac.new(secret.encode(), parts.get("t", "").encode() + b"." + body,
                        hashlib.sha256).hexdigest()
        ok = 1 if hmac.compare_digest(want, parts.get("v1", "")) else 0
        status = 204
        if state["fails"] > 0:
            state["fails"] -= 1
            status = 500
        seq = json.loads(body).get("seq")
        with open(outfile, "a") as f:
            f.write("%s %d %d %s\n" % (self.headers.get("Ordertrack-Delivery"), status, ok, seq))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
