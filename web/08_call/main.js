// Codelab step 8 with today's APIs over rtclab's rooms (WebSocket + JSON,
// web/07_signaling): the room's creator offers, the member who joins
// answers, candidates trickle both ways inside the server's `message`.
// The room comes from ?room= (a new one if absent) and the invite link is
// this page's address with it. ?peer=rust (served by `rtclab demo`) asks
// the demo for its Rust peer instead of a second tab. With ?report=1 the
// page POSTs what it decoded to /report (tests/browser_pages.rs).
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const rustPeer = params.get('peer') === 'rust';
const report = params.get('report') === '1';
let room = params.get('room');
if (!room) {
  room = (rustPeer ? 'rust-' : 'call-') + Math.random().toString(36).slice(2, 8);
  params.set('room', room);
  history.replaceState(null, '', '?' + params.toString());
}
$('room').textContent = room;

function log(text) { $('log').textContent += text + '\n'; }
function status(text, ok) {
  $('status').textContent = text;
  $('status').className = 'status ' + (ok ? 'ok' : 'bad');
}

// ANCHOR: invite
// The invite link: this page in the same room, without the test hooks.
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
// ANCHOR_END: invite
if (rustPeer) {
  $('invite').hidden = $('invite-link').hidden = true;
  $('remote-label').textContent = 'reflected by the Rust peer';
}

let pc = null;
let localStream = null;
let remoteSet = false;
const early = []; // candidates that came before the remote description

// ANCHOR: signaling
let ws = null;
let initiator = false;
const signal = (data) => ws.send(JSON.stringify({ type: 'message', data }));

function connect() {
  ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
  ws.onopen = () => ws.send(JSON.stringify({ type: 'create or join', room }));
  ws.onmessage = async (event) => {
    const m = JSON.parse(event.data);
    if (m.type === 'created') {
      initiator = true;
      status('waiting for the other side to join ' + room, true);
      // The demo starts a Rust peer that joins this room.
      if (rustPeer) fetch('/report', { method: 'POST', body: JSON.stringify({ invite: room }) });
    } else if (m.type === 'ready' && initiator) {
      await call();                  // the room's creator offers
    } else if (m.type === 'ready') {
      status('joined; waiting for the offer', true);
    } else if (m.type === 'full') {
      status('the room is full: open the page without ?room= for a new one', false);
    } else if (m.type === 'message') {
      await onSignal(m.data);
    } else if (m.type === 'bye') {
      status('the other side left', false);
    }
  };
}
// ANCHOR_END: signaling

// ANCHOR: peer
function makePeer() {
  pc = new RTCPeerConnection();
  pc.onicecandidate = (e) => {
    if (e.candidate) signal({ type: 'candidate', candidate: e.candidate.candidate,
      sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex });
  };
  pc.ontrack = (e) => { $('remote').srcObject = e.streams[0] || new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => log('connection: ' + pc.connectionState);
  for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
}

async function call() {
  makePeer();
  await pc.setLocalDescription(await pc.createOffer());
  signal({ type: 'offer', sdp: pc.localDescription.sdp });
  status('offer sent', true);
}

async function onSignal(d) {
  if (d.type === 'offer') {
    makePeer();
    await pc.setRemoteDescription({ type: 'offer', sdp: d.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    signal({ type: 'answer', sdp: pc.localDescription.sdp });
    status('answer sent', true);
  } else if (d.type === 'answer') {
    await pc.setRemoteDescription({ type: 'answer', sdp: d.sdp });
  } else if (d.type === 'candidate') {
    early.push(d);
  } // (the demo's Rust peer also sends `stats` each second: not used here)
  if (pc && pc.remoteDescription) {
    remoteSet = true;
    while (early.length) {
      const c = early.shift();
      if (c.candidate) await pc.addIceCandidate(c);
    }
  }
}
// ANCHOR_END: peer

// ANCHOR: start
// The camera first, then the room: whoever offers or answers sends it.
navigator.mediaDevices.getUserMedia({ video: true, audio: false }).then((stream) => {
  localStream = stream;
  $('local').srcObject = stream;
  connect();
}).catch((e) => status('no camera: ' + e.name, false));
// ANCHOR_END: start

// What this side decoded, from getStats(); the test reads it.
let reported = false;
setInterval(async () => {
  if (!pc || reported) return;
  let inbound = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
  });
  if (!inbound) return;
  status('in call: ' + inbound.framesDecoded + ' frames decoded from the other side', true);
  if (report && inbound.framesDecoded >= 30) {
    reported = true;
    fetch('/report', {
      method: 'POST',
      body: JSON.stringify({ page: '08_call', room, rust: rustPeer, remoteSet,
        framesDecoded: inbound.framesDecoded, width: $('remote').videoWidth,
        height: $('remote').videoHeight, connection: pc.connectionState }),
    });
  }
}, 500);
