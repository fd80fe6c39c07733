// SPDX-License-Identifier: MIT
// A small chat on stompgate with @stomp/stompjs: every message is a SEND to
// /topic/chat.<room> and every page subscribes to it. Text goes as a UTF-8
// body; "Send binary" sends the same text as bytes (content-type
// application/octet-stream), which stompgate delivers in a binary frame.
/* global StompJs */
(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const wsUrl = params.get('ws') ??
    `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  $('name').value = params.get('name') ?? `guest-${Math.floor(Math.random() * 1000)}`;
  if (params.get('room')) $('room').value = params.get('room');

  let sub = null;
  const topic = () => `/topic/chat.${$('room').value}`;

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
    sub = client.subscribe(topic(), (m) => {
      const who = m.headers['x-chat-name'] ?? '?';
      const binary = m.headers['content-type'] === 'application/octet-stream';
      const text = binary ? `[${m.binaryBody.length} bytes] ${new TextDecoder().decode(m.binaryBody)}` : m.body;
      show(who, text, binary);
    }, { receipt: `join-${Date.now()}` });
  }

  client.onConnect = (frame) => {
    setStatus(true, `connected (${frame.headers.server ?? 'STOMP'})`);
    join();
  };
  client.onWebSocketClose = () => setStatus(false, 'reconnecting…');
  client.onStompError = (f) => setStatus(false, `error: ${f.headers.message}`);

  $('room').addEventListener('change', () => { if (client.connected) join(); });
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
  window.chat = { client };
})();
