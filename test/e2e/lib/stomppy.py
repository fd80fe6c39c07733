#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Drives Debian's python3-stomp (stomp.py 8) against stompgate's STOMP port
for the end-to-end cases: connects (STOMP 1.2, optionally over TLS and with
heart-beats), subscribes with client-individual acks, prints a line
'subscribed', sends COUNT messages with receipts, waits until EXPECT
messages arrived (its own and any others sent to the destination), acks
them, disconnects with a receipt and prints one JSON object saying what
happened. Exits 1 if something did not arrive in time."""
import argparse
import json
import sys
import threading
import time

import stomp


class Collector(stomp.ConnectionListener):
    def __init__(self):
        self.lock = threading.Condition()
        self.connected = None
        self.messages = []
        self.receipts = []
        self.errors = []
        self.heartbeats = 0
        self.disconnected = False

    def on_connected(self, frame):
        with self.lock:
            self.connected = dict(frame.headers)
            self.lock.notify_all()

    def on_message(self, frame):
        with self.lock:
            self.messages.append({'body': frame.body, 'headers': dict(frame.headers)})
            self.lock.notify_all()

    def on_receipt(self, frame):
        with self.lock:
            self.receipts.append(frame.headers.get('receipt-id'))
            self.lock.notify_all()

    def on_error(self, frame):
        with self.lock:
            self.errors.append({'headers': dict(frame.headers), 'body': frame.body})
            self.lock.notify_all()

    def on_heartbeat(self):
        with self.lock:
            self.heartbeats += 1

    def on_disconnected(self):
        with self.lock:
            self.disconnected = True
            self.lock.notify_all()

    def wait(self, pred, seconds):
        with self.lock:
            return self.lock.wait_for(pred, timeout=seconds)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--dest', required=True)
    ap.add_argument('--count', type=int, default=3)
    ap.add_argument('--expect', type=int)
    ap.add_argument('--ca', help='CA file: connect over TLS')
    ap.add_argument('--heartbeat', type=int, default=0, help='ms both ways')
    ap.add_argument('--hold', type=float, default=0, help='seconds to stay connected at the end')
    ap.add_argument('--login', default='guest')
    ap.add_argument('--passcode', default='guest')
    a = ap.parse_args()
    expect = a.count if a.expect is None else a.expect
    out = {'ok': False}

    hosts = [('127.0.0.1', a.port)]
    conn = stomp.Connection12(hosts, heartbeats=(a.heartbeat, a.heartbeat), vhost='/',
                              reconnect_attempts_max=1)
    if a.ca:
        conn.set_ssl(for_hosts=hosts, ca_certs=a.ca)
    c = Collector()
    conn.set_listener('collector', c)
    try:
        conn.connect(a.login, a.passcode, wait=True)
    except Exception as e:  # refused logins end here
        c.wait(lambda: c.errors, 2)
        out.update(error=str(e) or type(e).__name__, errors=c.errors)
        print(json.dumps(out), flush=True)
        return 1
    out['connected'] = c.connected
    conn.subscribe(a.dest, id='1', ack='client-individual', headers={'receipt': 'sub'})
    if not c.wait(lambda: 'sub' in c.receipts or c.errors, 10) or c.errors:
        out.update(error='no RECEIPT for SUBSCRIBE', errors=c.errors)
        print(json.dumps(out), flush=True)
        return 1
    print('subscribed', flush=True)
    for i in range(a.count):
        conn.send(a.dest, 'py-%d' % i, headers={'receipt': 'p%d' % i})
    got = c.wait(lambda: len(c.messages) >= expect and
                 all(('p%d' % i) in c.receipts for i in range(a.count)), 15)
    for m in c.messages:
        conn.ack(m['headers']['ack'])
    if a.hold:
        time.sleep(a.hold)
    conn.disconnect(receipt='bye')
    out.update(ok=bool(got) and not c.errors, messages=c.messages, receipts=c.receipts,
               errors=c.errors, heartbeats=c.heartbeats)
    print(json.dumps(out), flush=True)
    return 0 if out['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
