// SPDX-License-Identifier: MIT
// A small chat on stompgate with @stomp/stompjs: every message is a SEND to
// /topic/chat.<room> and every page subscribes to it. Text goes as a UTF-8
// body; "Send binary" sends the same text as bytes (content-type
// application/octet-stream), which stompgate delivers in a binary frame.
// Who is online in the room comes from the presence back end
// (deploy/examples/presence-backend), which follows stompgate's session
// events: the page asks /app/presence/<room> once and then listens to
// /topic/presence.<room>.
// When stompgate keeps the chat's history (--history 'chat.#:1h'), every
// message carries its stream offset in x-stream-offset. The page remembers
// the last one it showed per room, in memory and in localStorage, and on
// every (re)connect or reload subscribes with x-stream-offset:
// offset=<last+1>, so the messages it missed arrive once, in order, before
// the live ones. Without history no offsets arrive and it subscribes as
// usual.
/* global StompJs */
(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const wsUrl = params.get('ws') ??
    `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  $('name').value = params.get('name') ?? `guest-${Math.floor(Math.random() * 1000)}`;
  if (params.get('room')) $('room').value = params.get('room');

  let sub = null;
  let presenceSub = null;
  let shownSeq = -1;
  const topic = () => `/topic/chat.${$('room').value}`;

  // The last offset shown, per room; localStorage is per origin, and the key
  // names the WebSocket URL too, since offsets belong to one broker's stream.
  const offsets = new Map();
  const offsetKey = (room) => `stompgate-chat offset ${wsUrl} ${room}`;
  const storage = (() => { try { return window.localStorage; } catch { return null; } })();
  function lastOffset(room) {
    if (!offsets.has(room)) {
      let v = null;
      try { v = storage?.getItem(offsetKey(room)); } catch { /* storage refused */ }
      offsets.set(room, /^\d+$/.test(v ?? '') ? Number(v) : null);
    }
    return offsets.get(room);
  }
  function rememberOffset(room, n) {
    offsets.set(room, n);
    try {
      if (n === null) storage?.removeItem(offsetKey(room));
      else storage?.setItem(offsetKey(room), String(n));
    } catch { /* storage full or refused: memory still resumes */ }
  }
  // The room whose SUBSCRIBE asked for an offset, until its receipt.
  let resuming = null;

  const client = new StompJs.Client({
    brokerURL: wsUrl,
    connectHeaders: { login: params.get('login') ?? 'guest', passcode: params.get('passcode') ?? 'guest' },
    reconnectDelay: 500,
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
  });

  function setStatus(up, text) {
    $('status').textContent = text;
    $('status').className = `status ${up ? 'up' : 'down'}`;
    document.body.dataset.connected = up ? 'yes' : 'no';
  }

  function notice(text) {
    const li = document.createElement('li');
    li.className = 'notice';
    li.textContent = text;
    $('messages').append(li);
  }

  function show(who, text, binary) {
    const li = document.createElement('li');
    const w = document.createElement('span');
    w.className = 'who';
    w.textContent = who;
    const t = document.createElement('span');
    t.className = binary ? 'text binary' : 'text';
    t.textContent = text;
    li.append(w, t);
    $('messages').append(li);
    $('messages').scrollTop = $('messages').scrollHeight;
  }

  function join() {
    sub?.unsubscribe();
    const room = $('room').value;
    const rid = `join-${Date.now()}`;
    const headers = { receipt: rid };
    const last = lastOffset(room);
    // Only once an offset was seen: a topic without history refuses one.
    if (last !== null) headers['x-stream-offset'] = `offset=${last + 1}`;
    resuming = last !== null ? room : null;
    client.watchForReceipt(rid, () => {
      if (resuming === room) resuming = null;
      document.body.dataset.joined = room;
    });
    sub = client.subscribe(topic(), (m) => {
      if (m.headers['x-history-incomplete'] === 'true') notice('Older messages are no longer kept: some were missed.');
      const who = m.headers['x-chat-name'] ?? '?';
      const binary = m.headers['content-type'] === 'application/octet-stream';
      const text = binary ? `[${m.binaryBody.length} bytes] ${new TextDecoder().decode(m.binaryBody)}` : m.body;
      show(who, text, binary);
      const off = m.headers['x-stream-offset'];
      if (/^\d+$/.test(off ?? '')) rememberOffset(room, Number(off));
    }, headers);
  }

  function showOnline(list) {
    if (list.room !== $('room').value || list.seq < shownSeq) return;
    shownSeq = list.seq;
    const ul = $('online');
    ul.replaceChildren(...list.users.map((u) => {
      const li = document.createElement('li');
      li.dataset.user = u.user;
      li.textContent = u.sessions > 1 ? `${u.user} ×${u.sessions}` : u.user;
      return li;
    }));
  }

  // Listens to the room's presence first, then joins it and asks who is
  // there, so that no change is missed in between.
  function enter() {
    presenceSub?.unsubscribe();
    delete document.body.dataset.joined;
    shownSeq = -1;
    $('online').replaceChildren();
    const room = $('room').value;
    const rid = `presence-${Date.now()}`;
    client.watchForReceipt(rid, () => {
      join();
      client.publish({ destination: `/app/presence/${room}` });
    });
    presenceSub = client.subscribe(`/topic/presence.${room}`, (m) => showOnline(JSON.parse(m.body)),
      { receipt: rid });
  }

  client.onUnhandledMessage = (m) => {
    if (m.headers.destination?.startsWith('/app/presence/')) showOnline(JSON.parse(m.body));
  };
  client.onConnect = (frame) => {
    setStatus(true, `connected (${frame.headers.server ?? 'STOMP'})`);
    enter();
  };
  client.onWebSocketClose = () => setStatus(false, 'reconnecting…');
  client.onStompError = (f) => {
    setStatus(false, `error: ${f.headers.message}`);
    // The gateway no longer keeps this room's history (started without
    // --history, say): forget the offset, and the reconnect subscribes
    // without one.
    if (resuming !== null && f.headers.message === 'No history for this subscription') {
      rememberOffset(resuming, null);
      resuming = null;
    }
  };

  $('room').addEventListener('change', () => { if (client.connected) enter(); });
  $('say').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('text').value;
    if (!text || !client.connected) return;
    client.publish({ destination: topic(), body: text, headers: { 'x-chat-name': $('name').value } });
    $('text').value = '';
  });
  $('send-binary').addEventListener('click', () => {
    const text = $('text').value;
    if (!text || !client.connected) return;
    client.publish({
      destination: topic(),
      binaryBody: new TextEncoder().encode(text),
      headers: { 'x-chat-name': $('name').value, 'content-type': 'application/octet-stream' },
    });
    $('text').value = '';
  });
  setStatus(false, 'connecting…');
  client.activate();
  window.chat = { client, lastOffset };
})();
