#!/usr/bin/env python3
"""Distinct, signed Meta missed-call webhooks for wrk (see post.lua).

The load bench's own clients sign each event as they send it; wrk's Lua
cannot sign, so this writes the requests beforehand, one per line with
CR and LF escaped, split between wrk's threads (requests-<n>.txt).
Same payload shape and secret as the load bench's ingest case.

    python3 benches/wrk/make-requests.py 400000 2 /tmp/wrk-requests
"""
import hashlib
import hmac
import os
import sys
import time

SECRET = b"bench-app-secret"  # APP_SECRET in benches/load.rs
TEMPLATE = (
    '{"object":"whatsapp_business_account","entry":[{"id":"366634483210360","changes":[{"value":'
    '{"messaging_product":"whatsapp","metadata":{"display_phone_number":"525500000000",'
    '"phone_number_id":"436666719526789"},"contacts":[{"profile":{"name":"Caller %d"},"wa_id":"%s"}],'
    '"calls":[{"id":"wacid.wrk.%s.%d","from":"%s","to":"525500000000","event":"terminate",'
    '"timestamp":"%d","direction":"USER_INITIATED","status":"FAILED","end_time":"%d"}]},'
    '"field":"calls"}]}]}'
)


def main():
    count, threads, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    os.makedirs(out, exist_ok=True)
    run = "%x" % time.time_ns()  # distinct call ids on every run
    unix = int(time.time())
    for t in range(threads):
        with open(os.path.join(out, "requests-%d.txt" % t), "w") as f:
            for i in range(t, count, threads):
                caller = "52155%08d" % i
                body = TEMPLATE % (i, caller, run, i, caller, unix, unix)
                sig = hmac.new(SECRET, body.encode(), hashlib.sha256).hexdigest()
                request = (
                    "POST /hooks/meta HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\nX-Hub-Signature-256: sha256=%s\r\n"
                    "Content-Length: %d\r\n\r\n%s" % (sig, len(body), body)
                )
                f.write(request.replace("\r", "\\r").replace("\n", "\\n") + "\n")


if __name__ == "__main__":
    main()
