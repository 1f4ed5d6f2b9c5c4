// Codelab step 7 over rtclab's signaling server: WebSocket + JSON instead of
// Socket.IO. The room comes from the URL (?room=NAME; a new random one if
// absent). With ?say=TEXT the page sends TEXT once the room is ready, and
// with &report=1 it POSTs what it saw to /report (the browser test reads it).
'use strict';

const params = new URLSearchParams(location.search);
let room = params.get('room');
if (!room) {
  room = 'room-' + Math.random().toString(36).slice(2, 8);
  params.set('room', room);
  history.replaceState(null, '', '?' + params.toString());
}
const say = params.get('say');
const report = params.get('report') === '1';

const $ = (id) => document.getElementById(id);
$('room').textContent = room;

const seen = [];     // every message, both ways, for the report
const received = []; // the data of relayed messages
let me = null;
let said = false;
let reported = false;

function show(direction, text, cls) {
  const line = document.createElement('span');
  line.className = cls;
  line.textContent = direction + ' ' + text + '\n';
  $('log').appendChild(line);
}

function status(text, ok) {
  $('status').textContent = text;
  $('status').className = 'status ' + (ok ? 'ok' : 'bad');
}

// The test's report: what this page saw, once it has said and heard.
function maybeReport() {
  if (!report || reported || !(said || !say) || received.length === 0) return;
  reported = true;
  fetch('/report', {
    method: 'POST',
    body: JSON.stringify({ room, id: me, said: say, received, seen }),
  });
}

// ANCHOR: websocket
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');

function send(message) {
  const text = JSON.stringify(message);
  ws.send(text);
  seen.push({ sent: message });
  show('→', text, 'sent');
}

ws.onopen = () => {
  status('connected; joining ' + room, true);
  send({ type: 'create or join', room });
};
// ANCHOR_END: websocket

ws.onmessage = (event) => {
  let m;
  try {
    m = JSON.parse(event.data);
  } catch (e) {
    show('←', event.data + '  (not JSON!)', 'error');
    return;
  }
  seen.push({ received: m });
  show('←', event.data, m.type === 'error' ? 'error' : 'received');
  switch (m.type) {
    case 'created':
      me = m.id;
      status('created the room; you are member ' + m.id + ', waiting for someone to join', true);
      break;
    case 'joined':
      me = m.id;
      status('joined; you are member ' + m.id, true);
      break;
    case 'join':
      status('member ' + m.id + ' is joining', true);
      break;
    case 'ready':
      status('ready: members ' + m.members.join(', '), true);
      $('text').disabled = $('send-button').disabled = $('leave').disabled = false;
      if (say && !said) {
        said = true;
        send({ type: 'message', data: { text: say } });
      }
      break;
    case 'full':
      status('the room is full; try another ?room=', false);
      break;
    case 'message':
      received.push(m.data);
      break;
    case 'bye':
      status('member ' + m.id + ' left', true);
      break;
    case 'error':
      status('error: ' + m.reason, false);
      break;
  }
  maybeReport();
};

ws.onclose = (event) => {
  status('disconnected (' + event.code + (event.reason ? ': ' + event.reason : '') + ')', false);
  $('text').disabled = $('send-button').disabled = $('leave').disabled = true;
};

$('send').onsubmit = (event) => {
  event.preventDefault();
  const text = $('text').value;
  if (text) send({ type: 'message', data: { text } });
  $('text').value = '';
};

$('leave').onclick = () => {
  send({ type: 'bye' });
  status('left the room', true);
  $('text').disabled = $('send-button').disabled = $('leave').disabled = true;
};
