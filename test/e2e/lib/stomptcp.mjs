// SPDX-License-Identifier: MIT
// STOMP straight over a TCP or TLS socket (stompgate's --stomp-listen), by
// hand: the byte stream is split into frames here (NUL or content-length
// ends a frame; EOLs between frames are heart-beats), so a case sees the
// wire as it is. Used by the end-to-end cases and by the conformance suite
// when it runs over TCP.
import net from 'node:net';
import tls from 'node:tls';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(pred, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return;
    await sleep(15);
  }
  throw new Error(`timed out waiting for ${what}`);
}

export function frameText(cmd, headers = {}, body = '') {
  let s = cmd + '\n';
  for (const [k, v] of Object.entries(headers)) s += `${k}:${v}\n`;
  return s + '\n' + body + '\0';
}

export function parseFrame(s) {
  let i = s.indexOf('\n\n');
  let sep = 2;
  const crlf = s.indexOf('\r\n\r\n');
  if (crlf >= 0 && (i < 0 || crlf < i)) { i = crlf; sep = 4; }
  const lines = s.slice(0, i).split(/\r?\n/);
  const headers = {};
  const raw = [];
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    const k = l.slice(0, c), v = l.slice(c + 1);
    raw.push([k, v]);
    if (!(k in headers)) headers[k] = v;
  }
  return { command: lines[0], headers, raw, body: s.slice(i + sep, s.lastIndexOf('\0')), text: s };
}

// Wraps sock (a net or tls socket) in a connection with frames[], beats,
// closed, put(), send(), take(), none(), waitFrame(), closedWithin(),
// close() (FIN) and destroy(); sock stays reachable as .sock. Bytes are
// read as latin1, as the WebSocket helpers do.
export function attachStomp(sock) {
  let buf = '';
  const c = {
    sock, frames: [], beats: 0, bytesIn: 0, closeInfo: null, lastError: null, onFrame: null,
    send: (d) => sock.write(d),
    put: (cmd, headers, body) => sock.write(frameText(cmd, headers, body)),
    close: () => sock.end(),
    destroy: () => sock.destroy(),
    terminate: () => sock.destroy(),
  };
  c.closed = new Promise((r) => sock.on('close', () => {
    c.closeInfo = { code: 0, reason: '' };
    r(c.closeInfo);
  }));
  sock.on('error', (e) => { c.lastError = e; });
  sock.on('data', (d) => {
    c.bytesIn += d.length;
    buf += d.toString('latin1');
    for (;;) {
      let i = 0;
      while (i < buf.length && (buf[i] === '\n' || buf[i] === '\r')) {
        if (buf[i] === '\n') c.beats++;
        i++;
      }
      if (i) buf = buf.slice(i);
      if (!buf) break;
      let he = buf.indexOf('\n\n'), sep = 2;
      const crlf = buf.indexOf('\r\n\r\n');
      if (crlf >= 0 && (he < 0 || crlf < he)) { he = crlf; sep = 4; }
      if (he < 0) break;
      const m = /(?:^|\n)content-length:(\d+)/.exec(buf.slice(0, he));
      let end;
      if (m) {
        end = he + sep + Number(m[1]);
        if (buf.length <= end) break;
      } else {
        end = buf.indexOf('\0', he + sep);
        if (end < 0) break;
      }
      const f = parseFrame(buf.slice(0, end + 1));
      f.binary = false;
      buf = buf.slice(end + 1);
      c.frames.push(f);
      c.onFrame?.(f);
    }
  });
  c.take = async (cmd, ms = 5000) => {
    let f;
    await waitFor(() => {
      const i = c.frames.findIndex((x) => x.command === cmd);
      if (i >= 0) [f] = c.frames.splice(i, 1);
      if (f === undefined && c.closeInfo) throw new Error(`connection closed without a ${cmd} frame`);
      return f !== undefined;
    }, ms, `${cmd} frame`);
    return f;
  };
  c.none = async (cmd, ms = 400) => {
    await sleep(ms);
    const f = c.frames.find((x) => x.command === cmd);
    if (f) throw new Error(`unexpected ${cmd}: ${f.text.slice(0, 200)}`);
  };
  c.waitFrame = async (cmd, ms = 10000) => {
    await waitFor(() => c.frames.some((f) => f.command === cmd), ms, `frame ${cmd}`);
    return c.frames.find((f) => f.command === cmd);
  };
  c.closedWithin = async (ms = 3000) => {
    const r = await Promise.race([c.closed, sleep(ms).then(() => null)]);
    if (r === null) throw new Error(`socket still open ${ms} ms after the ERROR (the spec says close)`);
    return r;
  };
  return c;
}

// Opens a STOMP connection to port on 127.0.0.1: plain TCP, or TLS when
// tlsOpts is given (tls.connect options). Resolves once connected.
export function openStomp(port, tlsOpts = null, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const s = tlsOpts ? tls.connect({ port, host, ...tlsOpts }) : net.connect(port, host);
    const c = attachStomp(s);
    s.once(tlsOpts ? 'secureConnect' : 'connect', () => resolve(c));
    s.once('error', reject);
  });
}
