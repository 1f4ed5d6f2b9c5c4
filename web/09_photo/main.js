// Codelab step 9 with today's APIs: a snapshot of the camera, its pixels, over
// an RTCDataChannel labelled "photo", between two tabs in a room of
// rtclab's signaling server, or (?peer=rust, served by `rtclab demo`) to
// the demo's Rust peer. The wire protocol is the demo's: a JSON header
// {type:'photo', bytes, sha256, width, height, mime}, the bytes as binary
// messages, and a JSON {type:'photo-ack', ok, bytes, chunks, sha256} back.
// With ?report=1 the sender snaps as soon as the channel is open and each
// side POSTs what it saw to /report (tests/browser_pages.rs reads it).
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const rustPeer = params.get('peer') === 'rust';
const report = params.get('report') === '1';
let room = params.get('room');
if (!room) {
  room = (rustPeer ? 'rust-' : 'photo-') + Math.random().toString(36).slice(2, 8);
  params.set('room', room);
  history.replaceState(null, '', '?' + params.toString());
}
$('room').textContent = room;

function log(text) { $('log').textContent += text + '\n'; }
function status(text, ok) {
  $('status').textContent = text;
  $('status').className = 'status ' + (ok ? 'ok' : 'bad');
}
function post(result) {
  if (report) fetch('/report', { method: 'POST', body: JSON.stringify({ page: '09_photo', room, ...result }) });
}

const invite = new URL(location.href);
for (const k of ['peer', 'report']) invite.searchParams.delete(k);
$('invite-link').value = invite.href;
$('invite').onclick = async () => {
  $('invite-link').select();
  try {
    await navigator.clipboard.writeText(invite.href);
    status('invite link copied: open it in another tab', true);
  } catch (e) {
    status('select the link beside the button and copy it', true);
  }
};
if (rustPeer) $('invite').hidden = $('invite-link').hidden = true;

let pc = null;
let photoChannel = null;
let initiator = false;
const early = [];
let ws = null;
const signal = (data) => ws.send(JSON.stringify({ type: 'message', data }));

function connect() {
  ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
  ws.onopen = () => ws.send(JSON.stringify({ type: 'create or join', room }));
  ws.onmessage = async (event) => {
    const m = JSON.parse(event.data);
    if (m.type === 'created') {
      initiator = true;
      status('waiting for the other side to join ' + room, true);
      if (rustPeer) fetch('/report', { method: 'POST', body: JSON.stringify({ invite: room }) });
    } else if (m.type === 'ready' && initiator) {
      await call();
    } else if (m.type === 'message') {
      await onSignal(m.data);
    } else if (m.type === 'full') {
      status('the room is full: open the page without ?room= for a new one', false);
    }
  };
}

function makePeer() {
  pc = new RTCPeerConnection();
  pc.onicecandidate = (e) => {
    if (e.candidate) signal({ type: 'candidate', candidate: e.candidate.candidate,
      sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex });
  };
  pc.onconnectionstatechange = () => log('connection: ' + pc.connectionState);
  // The side that answers gets the channel from the offerer.
  pc.ondatachannel = (e) => setupChannel(e.channel);
}

// ANCHOR: channel
async function call() {
  makePeer();
  setupChannel(pc.createDataChannel('photo'));
  await pc.setLocalDescription(await pc.createOffer());
  signal({ type: 'offer', sdp: pc.localDescription.sdp });
}

function setupChannel(channel) {
  photoChannel = channel;
  channel.binaryType = 'arraybuffer';
  channel.onopen = () => {
    $('snap-send').disabled = false;
    status('channel “photo” open: snap a photo', true);
    if (report && initiator) setTimeout(snapAndSend, 1000); // the camera has frames by then
  };
  channel.onmessage = onMessage;
}
// ANCHOR_END: channel

async function onSignal(d) {
  if (d.type === 'offer') {
    makePeer();
    await pc.setRemoteDescription({ type: 'offer', sdp: d.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    signal({ type: 'answer', sdp: pc.localDescription.sdp });
  } else if (d.type === 'answer') {
    await pc.setRemoteDescription({ type: 'answer', sdp: d.sdp });
  } else if (d.type === 'candidate') {
    early.push(d);
  }
  while (pc && pc.remoteDescription && early.length) {
    const c = early.shift();
    if (c.candidate) await pc.addIceCandidate(c);
  }
}

async function sha256hex(buf) {
  const d = await crypto.subtle.digest('SHA-256', buf);
  return Array.from(new Uint8Array(d)).map((b) => b.toString(16).padStart(2, '0')).join('');
}

// ANCHOR: snap
const CHUNK = 16 * 1024; // the size every browser pair has always accepted

async function snapAndSend() {
  const video = $('local');
  const canvas = $('photo');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(video, 0, 0);
  // The pixels, as the codelab sends them: red, green, blue, alpha.
  const bytes = ctx.getImageData(0, 0, canvas.width, canvas.height).data.buffer;
  photoChannel.send(JSON.stringify({ type: 'photo', bytes: bytes.byteLength,
    sha256: await sha256hex(bytes), width: canvas.width, height: canvas.height, mime: 'image/x-rgba' }));
  photoChannel.bufferedAmountLowThreshold = 256 * 1024;
  for (let offset = 0; offset < bytes.byteLength; offset += CHUNK) {
    if (photoChannel.bufferedAmount > 1024 * 1024) {
      // Queue no more than 1 MiB: wait until the channel drains.
      await new Promise((resolve) => { photoChannel.onbufferedamountlow = resolve; });
    }
    photoChannel.send(bytes.slice(offset, offset + CHUNK));
  }
  sent = { bytes: bytes.byteLength, width: canvas.width, height: canvas.height };
  log('sent ' + bytes.byteLength + ' bytes in ' + Math.ceil(bytes.byteLength / CHUNK) + ' messages');
}
// ANCHOR_END: snap
let sent = null;

$('snap-send').onclick = () => snapAndSend().catch((e) => status('error: ' + e.message, false));

// ANCHOR: receive
let incoming = null;

async function onMessage(e) {
  if (typeof e.data === 'string') {
    const m = JSON.parse(e.data);
    if (m.type === 'photo') {
      incoming = { header: m, pixels: new Uint8ClampedArray(m.bytes), got: 0, chunks: 0 };
    } else if (m.type === 'photo-ack') {
      status(m.ok ? 'the receiver has the photo: ' + m.bytes + ' bytes, SHA-256 matches'
        : 'the receiver refused the photo: ' + (m.error || 'SHA-256 differs'), m.ok);
      post({ role: 'sender', sent, ack: m });
    }
    return;
  }
  if (!incoming) return;
  const piece = new Uint8Array(e.data);
  if (incoming.got + piece.length > incoming.header.bytes) return; // more than announced
  incoming.pixels.set(piece, incoming.got);
  incoming.got += piece.length;
  incoming.chunks += 1;
  if (incoming.got < incoming.header.bytes) return;
  const { width, height } = incoming.header;
  const sha256 = await sha256hex(incoming.pixels.buffer);
  const ok = sha256 === incoming.header.sha256 && incoming.got === width * height * 4;
  if (ok) {
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    canvas.getContext('2d').putImageData(new ImageData(incoming.pixels, width, height), 0, 0);
    $('incoming').prepend(canvas);
  }
  photoChannel.send(JSON.stringify({ type: 'photo-ack', ok, bytes: incoming.got,
    chunks: incoming.chunks, sha256 }));
  post({ role: 'receiver', ok, bytes: incoming.got, chunks: incoming.chunks, width, height });
  incoming = null;
}
// ANCHOR_END: receive

navigator.mediaDevices.getUserMedia({ video: true, audio: false }).then((stream) => {
  $('local').srcObject = stream;
  connect();
}).catch((e) => status('no camera: ' + e.name, false));
