// rtclab demo page. Two modes:
//  - default: this page calls a Rust peer inside the demo server (it joins a
//    fresh room and asks the server for a peer with POST /report
//    {"invite": room}); the camera comes back reflected, chat and photo go
//    over data channels, and the Rust side reports what it sees each second;
//  - ?call=ROOM: two tabs in one room call each other (codelab step 8;
//    ?call=new picks a fresh room, and its "Copy invite link" button gives
//    the address for the second tab); the
//    server only relays signaling, and the panel shows this browser's view.
// Test hooks: ?autotest=1 runs chat, photo and video checks and POSTs the
// result to /report; ?nocam=1 acts as if there were no camera.
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const autotest = params.get('autotest') === '1';
// What ?autotest=1 waits for (default: everything).
const need = (params.get('need') || 'video,chat,photo').split(',');
const noCam = params.get('nocam') === '1';
// ?offer=rust: the Rust peer offers and the page answers (`offer-request`).
const rustOffers = params.get('offer') === 'rust';
let callRoom = params.get('call');
const callMode = callRoom !== null;
if (callMode && (callRoom === '' || callRoom === 'new')) {
  callRoom = 'call-' + Math.random().toString(36).slice(2, 8);
  params.set('call', callRoom);
  history.replaceState(null, '', '?' + params.toString());
}
const room = callMode ? callRoom : 'rust-' + Math.random().toString(36).slice(2, 10);

let ws = null;
let pc = null;
let stream = null;
let chat = null;
let photoCh = null;
let initiator = false;
let pendingCandidates = [];
let remoteSet = false;
let lastRust = null;
const CHUNK = Number(params.get('chunk')) || 16 * 1024;

const result = {
  mode: callMode ? 'call' : 'rust', camera: false, chatOpen: false, chatEcho: null,
  photoAck: null, framesBack: 0, errors: [], rust: null, browser: null,
};

// ---- small UI helpers ------------------------------------------------------

function banner(text, bad) {
  const b = $('banner');
  b.hidden = !text;
  b.textContent = text || '';
  b.className = 'banner' + (bad ? ' bad' : '');
  if (text && bad) result.errors.push(text);
}

function pill(id, text, cls) {
  const p = $('st-' + id);
  p.textContent = text;
  p.className = 'pill' + (cls ? ' ' + cls : '');
}

function detail(id, text) { $('d-' + id).textContent = text; }

function chatLine(text, who) {
  const d = document.createElement('div');
  d.className = 'msg ' + who;
  d.textContent = text;
  $('chat-log').appendChild(d);
  $('chat-log').scrollTop = 1e9;
}

function fmtBytes(n) {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' Mi';
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + ' Ki';
  return String(n);
}

// ---- setup -----------------------------------------------------------------

$(callMode ? 'mode-call' : 'mode-rust').classList.add('active');
$('room-line').textContent = 'Room ' + room;
if (callMode) {
  $('video-title').textContent = 'Video call between two tabs';
  $('video-help').textContent = 'Copy the invite link into a second tab (or another browser): the two join room “' +
    room + '” and call each other directly (codelab step 8); the server only relays signaling.';
  // The invite link: this room, without the test hooks.
  const invite = new URL(location.href);
  for (const k of ['autotest', 'need', 'limit', 'nocam']) invite.searchParams.delete(k);
  $('invite-link').value = invite.href;
  $('invite-row').hidden = false;
  $('invite').onclick = async () => {
    $('invite-link').select();
    try {
      await navigator.clipboard.writeText(invite.href);
      $('invite').textContent = 'Copied: open it in another tab';
    } catch (e) {
      $('invite').textContent = 'Copy the selected link';
    }
  };
  $('remote-label').textContent = 'The other tab';
  $('panel-title').textContent = 'What this browser sees';
  $('panel-foot').textContent = 'From this browser\'s getStats(), every second.';
  $('chat-input').placeholder = 'Say something to the other tab…';
  document.querySelectorAll('.meter .k')[4].textContent = 'UDP in (all layers)';
  document.querySelectorAll('.meter .k')[5].textContent = 'UDP out (all layers)';
  $('rust-line').hidden = true;
}

async function start() {
  if (noCam) {
    banner('No camera (?nocam=1): continuing with a data-channel-only session — chat and photos still work.');
  } else if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    banner('This browser gives no camera access here (it needs https or localhost): continuing with a data-channel-only session.');
  } else {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
      $('local').srcObject = stream;
      result.camera = true;
    } catch (e) {
      banner('No camera (' + e.name + (e.message ? ': ' + e.message : '') +
        '): continuing with a data-channel-only session — chat and photos still work.');
    }
  }
  if (!stream) {
    $('local-info').textContent = '(no camera)';
    $('remote-info').textContent = '(no video in a data-only session)';
  }
  connectSignaling();
}

// ---- signaling -------------------------------------------------------------

function send(data) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'message', data }));
}

function connectSignaling() {
  ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
  ws.onopen = () => {
    pill('signaling', 'joining', 'busy');
    ws.send(JSON.stringify({ type: 'create or join', room }));
  };
  ws.onerror = () => banner('Cannot reach the signaling server at ' + location.host + ': is `rtclab demo` running?', true);
  ws.onclose = (ev) => {
    pill('signaling', 'closed', 'bad');
    detail('signaling', 'WebSocket closed (' + ev.code + (ev.reason ? ': ' + ev.reason : '') + ')');
    if (ev.code === 1001) banner('The demo server stopped (Ctrl-C): reload when it is back.', true);
  };
  ws.onmessage = async (event) => {
    let m;
    try { m = JSON.parse(event.data); } catch (e) { return; }
    switch (m.type) {
      case 'created':
        initiator = true;
        pill('signaling', callMode ? 'waiting' : 'inviting', 'busy');
        if (callMode) {
          detail('signaling', 'room ' + room + ': waiting for a second tab to open this address');
        } else {
          detail('signaling', 'room ' + room + ': asking the server for a Rust peer');
          const r = await fetch('/report', { method: 'POST', body: JSON.stringify({ invite: room }) });
          if (!r.ok) banner('The server did not start a Rust peer (HTTP ' + r.status + ').', true);
          setTimeout(() => {
            if (!pc && !$('banner').textContent) {
              banner('No Rust peer joined within 10 seconds: is this page served by `rtclab demo`?', true);
            }
          }, 10000);
        }
        break;
      case 'joined':
        initiator = false;
        pill('signaling', 'joined', 'busy');
        detail('signaling', 'room ' + room + ' as member ' + m.id);
        break;
      case 'ready':
        pill('signaling', 'ready', 'ok');
        detail('signaling', 'room ' + room + ', members ' + m.members.join(', '));
        if (initiator && !pc && rustOffers && !callMode) {
          makePeer();
          result.rustOffered = true;
          send({ type: 'offer-request', video: !!stream });
        } else if (initiator && !pc) {
          await call();
        }
        break;
      case 'full':
        pill('signaling', 'full', 'bad');
        banner('Room “' + room + '” already has two members: open the demo with another ?call= name.', true);
        break;
      case 'bye':
        pill('signaling', 'peer left', 'bad');
        detail('signaling', 'member ' + m.id + ' left room ' + room);
        chatLine(callMode ? 'The other tab left.' : 'The Rust peer left (the server stopped, or the session ended).', 'sys');
        break;
      case 'error':
        banner('Signaling error: ' + m.reason, true);
        break;
      case 'message':
        await onSignal(m.data);
        break;
    }
  };
}

async function onSignal(d) {
  if (!d || typeof d !== 'object') return;
  try {
    if (d.type === 'offer') {
      if (!pc) makePeer();
      await pc.setRemoteDescription({ type: 'offer', sdp: d.sdp });
      remoteSet = true;
      await flushCandidates();
      await pc.setLocalDescription(await pc.createAnswer());
      send({ type: 'answer', sdp: pc.localDescription.sdp });
    } else if (d.type === 'answer') {
      await pc.setRemoteDescription({ type: 'answer', sdp: d.sdp });
      remoteSet = true;
      await flushCandidates();
    } else if (d.type === 'candidate') {
      pendingCandidates.push(d);
      if (remoteSet) await flushCandidates();
    } else if (d.type === 'stats') {
      showRustStats(d);
    } else if (d.type === 'xray') {
      showXray(d);
    } else if (d.type === 'error') {
      banner('The Rust peer reports: ' + d.message, true);
    }
  } catch (e) {
    banner('WebRTC error: ' + e.message, true);
  }
}

async function flushCandidates() {
  const list = pendingCandidates;
  pendingCandidates = [];
  for (const c of list) {
    try {
      await pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex });
    } catch (e) {
      console.warn('candidate refused', c, e);
    }
  }
}

// ---- the peer connection ---------------------------------------------------

function makePeer() {
  pc = new RTCPeerConnection({ iceServers: [] });
  pc.onicecandidate = (e) => {
    if (e.candidate) {
      send({ type: 'candidate', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex });
    } else {
      send({ type: 'candidate', candidate: '', sdpMid: '0', sdpMLineIndex: 0 });
    }
  };
  pc.ontrack = (e) => {
    const v = $('remote');
    if (v.srcObject !== e.streams[0]) v.srcObject = e.streams[0] || new MediaStream([e.track]);
    countFrames(v);
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'failed') {
      banner('The connection failed: no ICE path, or the DTLS handshake did not finish. ' +
        'On one machine, check that loopback candidates are allowed; across machines, run the demo with --listen 0.0.0.0:8080.', true);
    }
    if (callMode) browserView();
  };
  pc.ondatachannel = (e) => setupChannel(e.channel);
  if (stream) for (const t of stream.getTracks()) pc.addTrack(t, stream);
}

async function call() {
  makePeer();
  setupChannel(pc.createDataChannel('chat'));
  setupChannel(pc.createDataChannel('photo'));
  await pc.setLocalDescription(await pc.createOffer());
  send({ type: 'offer', sdp: pc.localDescription.sdp });
}

function setupChannel(ch) {
  ch.binaryType = 'arraybuffer';
  if (ch.label === 'chat') {
    chat = ch;
    ch.onopen = () => {
      result.chatOpen = true;
      $('chat-input').disabled = $('chat-send').disabled = false;
      chatLine('chat channel open', 'sys');
      if (autotest) sendChat('hello rust');
    };
    ch.onclose = () => {
      $('chat-input').disabled = $('chat-send').disabled = true;
      chatLine('chat channel closed', 'sys');
    };
    ch.onmessage = (e) => {
      const text = typeof e.data === 'string' ? e.data : '[' + e.data.byteLength + ' bytes]';
      chatLine(text, 'them');
      if (text === 'echo: hello rust' || (callMode && text === 'hello rust')) result.chatEcho = text;
      maybeFinish();
    };
  } else if (ch.label === 'photo') {
    photoCh = ch;
    ch.onopen = () => {
      $('snap-send').disabled = false;
      if (autotest && need.includes('photo')) setTimeout(snapAndSend, Number(params.get('photoDelay') || (stream ? 1500 : 0)));
    };
    ch.onclose = () => { $('snap-send').disabled = true; };
    ch.onmessage = onPhotoMessage;
  }
  // A channel the other side created may be open already when it arrives
  // (and may still fire `open`): run the handler once either way.
  const onopen = ch.onopen;
  let opened = false;
  ch.onopen = () => { if (!opened) { opened = true; onopen(); } };
  if (ch.readyState === 'open') ch.onopen();
}

function sendChat(text) {
  if (!chat || chat.readyState !== 'open') return;
  chat.send(text);
  chatLine(text, 'me');
}

$('chat-form').onsubmit = (e) => {
  e.preventDefault();
  const text = $('chat-input').value.trim();
  if (text) sendChat(text);
  $('chat-input').value = '';
};

// ---- photo (codelab step 9) -------------------------------------------------

async function sha256hex(buf) {
  if (!window.crypto || !crypto.subtle) return '';
  const d = await crypto.subtle.digest('SHA-256', buf);
  return Array.from(new Uint8Array(d)).map((b) => b.toString(16).padStart(2, '0')).join('');
}

function drawSnapshot(canvas) {
  const ctx = canvas.getContext('2d');
  const v = $('local');
  if (stream && v.videoWidth) {
    canvas.width = v.videoWidth;
    canvas.height = v.videoHeight;
    ctx.drawImage(v, 0, 0);
  } else {
    // No camera: a generated picture, so the transfer still has something to carry.
    canvas.width = 640;
    canvas.height = 480;
    const g = ctx.createLinearGradient(0, 0, 640, 480);
    g.addColorStop(0, '#2f5bd3');
    g.addColorStop(1, '#16794a');
    ctx.fillStyle = g;
    ctx.fillRect(0, 0, 640, 480);
    ctx.fillStyle = '#fff';
    ctx.font = 'bold 44px sans-serif';
    ctx.fillText('rtclab ' + new Date().toLocaleTimeString(), 40, 250);
  }
}

async function snapAndSend() {
  try {
    await sendPhoto();
  } catch (e) {
    $('photo-status').textContent = '✗ The photo could not be sent: ' + e.message;
    $('photo-status').className = 'bad-text';
    result.errors.push('photo: ' + e.message);
  }
}

async function sendPhoto() {
  if (!photoCh || photoCh.readyState !== 'open') throw new Error('the photo channel is not open');
  const canvas = $('snap');
  drawSnapshot(canvas);
  const blob = await new Promise((r) => canvas.toBlob(r, 'image/jpeg', 0.85));
  if (!blob) throw new Error('the canvas gave no JPEG');
  const buf = await blob.arrayBuffer();
  result.photoSent = buf.byteLength;
  const hash = await sha256hex(buf);
  photoCh.send(JSON.stringify({ type: 'photo', bytes: buf.byteLength, sha256: hash,
    width: canvas.width, height: canvas.height, mime: 'image/jpeg' }));
  photoCh.bufferedAmountLowThreshold = 256 * 1024;
  for (let off = 0; off < buf.byteLength; off += CHUNK) {
    if (photoCh.bufferedAmount > 1024 * 1024) {
      await new Promise((r) => { photoCh.onbufferedamountlow = () => { photoCh.onbufferedamountlow = null; r(); }; });
    }
    photoCh.send(buf.slice(off, off + CHUNK));
  }
  $('photo-status').textContent = 'Sent ' + fmtBytes(buf.byteLength) + 'B in ' +
    Math.ceil(buf.byteLength / CHUNK) + ' chunks; waiting for the receiver to check it…';
  $('photo-status').className = 'dim';
}

$('snap-send').onclick = snapAndSend;

let incoming = null;
async function onPhotoMessage(e) {
  if (typeof e.data === 'string') {
    let m;
    try { m = JSON.parse(e.data); } catch (err) { return; }
    if (m.type === 'photo-ack') {
      result.photoAck = m;
      const el = $('photo-status');
      if (m.ok) {
        el.textContent = '✓ Received by ' + (callMode ? 'the other tab' : 'the Rust peer') + ': ' + m.bytes +
          ' bytes in ' + m.chunks + (m.chunks === 1 ? ' chunk' : ' chunks') + ', SHA-256 ' + m.sha256.slice(0, 16) + '… matches (' + m.ms + ' ms).';
        el.className = 'ok-text';
      } else {
        el.textContent = '✗ The receiver refused the photo: ' + (m.error || 'hash mismatch');
        el.className = 'bad-text';
      }
      maybeFinish();
    } else if (m.type === 'photo') {
      incoming = { header: m, parts: [], got: 0, chunks: 0, t0: performance.now() };
    }
    return;
  }
  if (!incoming) return;
  incoming.parts.push(e.data);
  incoming.got += e.data.byteLength;
  incoming.chunks += 1;
  if (incoming.got < incoming.header.bytes) return;
  const blob = new Blob(incoming.parts, { type: incoming.header.mime || 'image/jpeg' });
  const hash = await sha256hex(await blob.arrayBuffer());
  const ok = !incoming.header.sha256 || !hash || hash === incoming.header.sha256;
  const img = document.createElement('img');
  img.src = URL.createObjectURL(blob);
  $('photos-in').prepend(img);
  photoCh.send(JSON.stringify({ type: 'photo-ack', ok, bytes: incoming.got, chunks: incoming.chunks,
    sha256: hash, ms: Math.round(performance.now() - incoming.t0) }));
  incoming = null;
}

// ---- what we see -----------------------------------------------------------

function countFrames(video) {
  if (!('requestVideoFrameCallback' in HTMLVideoElement.prototype)) return;
  const tick = () => {
    result.framesBack += 1;
    maybeFinish();
    video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
}

const layerClass = (s) => {
  if (!s) return '';
  const v = String(s).toLowerCase();
  if (['connected', 'established', 'open', 'keyed', 'completed', 'stable'].includes(v)) return 'ok';
  if (['failed', 'closed', 'disconnected'].includes(v)) return 'bad';
  if (v === 'new') return '';
  return 'busy';
};

function showRustStats(s) {
  lastRust = s;
  result.rust = s;
  const ice = s.ice ? s.ice.toLowerCase() : (s.failed ? 'failed' : 'new');
  pill('ice', ice, layerClass(ice));
  detail('ice', s.pair ? s.pair.local + ' ⇄ ' + s.pair.remote
    : (s.udp ? 'Rust socket ' + s.udp + ', checking candidates' : 'waiting for the offer'));
  const t = (s.transport || '').toLowerCase();
  const dtls = t === 'connected' ? 'connected' : t === 'handshaking' ? 'handshaking'
    : t === 'failed' || t === 'closed' ? t : 'new';
  pill('dtls', dtls, layerClass(dtls));
  let dd = s.dtls_role ? 'DTLS 1.2 · Rust is the ' + s.dtls_role.toLowerCase() : 'waits for ICE';
  // The suite the Rust side's handshake chose (the browser's getStats()
  // names the same one as dtlsCipher).
  const bs = browserTransport;
  if (s.dtls_suite && dtls === 'connected') dd += '\n' + s.dtls_suite;
  else if (bs && bs.dtlsCipher && dtls === 'connected') dd += '\n' + bs.dtlsCipher;
  detail('dtls', dd);
  const srtp = s.srtp ? 'keyed' : (dtls === 'connected' ? 'none' : 'new');
  pill('srtp', srtp, s.srtp ? 'ok' : '');
  detail('srtp', s.srtp ? s.srtp + '\nkeys from the DTLS exporter' : (stream ? 'waits for DTLS' : 'no media in this session'));
  const sctp = (s.sctp || 'new').toLowerCase();
  pill('sctp', sctp, layerClass(sctp));
  detail('sctp', s.data ? s.data.messages_in + ' messages in, ' + s.data.messages_out + ' out' : '—');
  const chans = s.channels || [];
  const open = chans.filter((c) => c.state === 'Open').length;
  pill('dc', chans.length ? open + ' open' : 'new', chans.length && open === chans.length ? 'ok' : (chans.length ? 'busy' : ''));
  detail('dc', chans.map((c) => c.label + ': ' + c.state.toLowerCase()).join(', ') || '—');
  $('m-rtp-in').textContent = s.rtp.in_per_s;
  $('m-rtp-out').textContent = s.rtp.out_per_s;
  $('m-fr-in').textContent = s.frames.in_per_s;
  $('m-fr-out').textContent = s.frames.out_per_s;
  $('m-dc-in').textContent = fmtBytes(s.data.bytes_in);
  $('m-dc-out').textContent = fmtBytes(s.data.bytes_out);
  if (s.error) banner('The Rust peer reports: ' + s.error, true);
  if (s.connection) $('remote-info').textContent = stream ? '(' + s.frames.out + ' frames reflected)' : '';
}

let browserTransport = null;
let lastInbound = null;
async function pollBrowserStats() {
  if (!pc) return;
  const stats = await pc.getStats();
  let transport = null;
  let pair = null;
  let inbound = null;
  let outbound = null;
  const byId = {};
  stats.forEach((r) => { byId[r.id] = r; });
  stats.forEach((r) => {
    if (r.type === 'transport') transport = r;
    if (r.type === 'inbound-rtp' && r.kind === 'video') inbound = r;
    if (r.type === 'outbound-rtp' && r.kind === 'video') outbound = r;
  });
  if (transport && transport.selectedCandidatePairId) pair = byId[transport.selectedCandidatePairId];
  browserTransport = transport;
  result.browser = {
    connection: pc.connectionState,
    dtlsCipher: transport && transport.dtlsCipher,
    srtpCipher: transport && transport.srtpCipher,
    framesDecoded: inbound ? inbound.framesDecoded : 0,
    framesSent: outbound ? outbound.framesSent : 0,
  };
  if (inbound) {
    $('remote-info').textContent = '(' + (inbound.frameWidth || '?') + '×' + (inbound.frameHeight || '?') +
      ', ' + (inbound.framesPerSecond || 0) + ' fps decoded)';
  }
  if (outbound) $('local-info').textContent = '(' + (outbound.frameWidth || '?') + '×' + (outbound.frameHeight || '?') + ', VP8)';
  if (callMode) browserView(transport, pair, inbound, outbound, byId);
  lastInbound = inbound;
  maybeFinish();
}

// Call mode: the panel shows this browser's own view of each layer.
let lastB = null;
function browserView(transport, pair, inbound, outbound, byId) {
  if (!pc) return;
  const ice = pc.iceConnectionState;
  pill('ice', ice, layerClass(ice));
  if (pair && byId) {
    const l = byId[pair.localCandidateId];
    const r = byId[pair.remoteCandidateId];
    if (l && r) detail('ice', (l.address || l.ip) + ':' + l.port + ' ' + l.candidateType + ' ⇄ ' +
      (r.address || r.ip) + ':' + r.port + ' ' + r.candidateType);
  }
  if (!transport) return;
  const dtls = transport.dtlsState || 'new';
  pill('dtls', dtls, layerClass(dtls));
  const version = { FEFD: 'DTLS 1.2', FEFC: 'DTLS 1.3' }[transport.tlsVersion] || 'DTLS';
  detail('dtls', version + (transport.dtlsRole ? ' · this tab is the ' + transport.dtlsRole : '') +
    (transport.dtlsCipher ? '\n' + transport.dtlsCipher : ''));
  pill('srtp', transport.srtpCipher ? 'keyed' : 'new', transport.srtpCipher ? 'ok' : '');
  detail('srtp', transport.srtpCipher || (stream ? 'waits for DTLS' : 'no media in this session'));
  const sctp = pc.sctp ? pc.sctp.state : 'new';
  pill('sctp', sctp, layerClass(sctp));
  detail('sctp', pc.sctp ? 'max message ' + fmtBytes(pc.sctp.maxMessageSize) + 'B' : '—');
  const chans = [chat, photoCh].filter(Boolean);
  const open = chans.filter((c) => c.readyState === 'open').length;
  pill('dc', chans.length ? open + ' open' : 'new', chans.length && open === chans.length ? 'ok' : '');
  detail('dc', chans.map((c) => c.label + ': ' + c.readyState).join(', ') || '—');
  const now = { t: performance.now(), rin: 0, rout: 0, fin: 0, fout: 0, bin: transport.bytesReceived || 0, bout: transport.bytesSent || 0 };
  if (inbound) { now.rin = inbound.packetsReceived || 0; now.fin = inbound.framesDecoded || 0; }
  if (outbound) { now.rout = outbound.packetsSent || 0; now.fout = outbound.framesSent || 0; }
  if (lastB) {
    const dt = Math.max(0.001, (now.t - lastB.t) / 1000);
    const r = (a, b) => Math.round((a - b) / dt);
    $('m-rtp-in').textContent = r(now.rin, lastB.rin);
    $('m-rtp-out').textContent = r(now.rout, lastB.rout);
    $('m-fr-in').textContent = r(now.fin, lastB.fin);
    $('m-fr-out').textContent = r(now.fout, lastB.fout);
  }
  $('m-dc-in').textContent = fmtBytes(now.bin);
  $('m-dc-out').textContent = fmtBytes(now.bout);
  lastB = now;
}

setInterval(() => { pollBrowserStats().catch(() => {}); }, 1000);

// ---- the x-ray panel -----------------------------------------------------------
// The Rust peer streams its capture's ladder ({"type":"xray","lines":[…]});
// the panel is web/xray/panel.js, shared with the SFU's page.

const xray = XrayPanel($('xray'), {
  who: 'the Rust peer', in: 'browser → rust', out: 'rust → browser', file: 'rtclab-demo.pcapng',
});
const showXray = (d) => xray.show(d);

// ---- the automatic test (?autotest=1) ----------------------------------------

window.addEventListener('error', (e) => result.errors.push('error: ' + e.message));
window.addEventListener('unhandledrejection', (e) => result.errors.push('rejection: ' + (e.reason && e.reason.message || e.reason)));

let finished = false;
function maybeFinish(force) {
  if (!autotest || finished) return;
  const decoded = (result.browser && result.browser.framesDecoded) || 0;
  const done = {
    // With the Rust peer, its own count too: its stats come once a second,
    // and the check reads the latest (the first, at 0 s, shows no frame).
    video: !result.camera || (Math.max(result.framesBack, decoded) >= 30
      && (result.mode !== 'rust'
        || ((result.rust && result.rust.frames && result.rust.frames.out) || 0) > 0)),
    chat: !!result.chatEcho,
    photo: !!(result.photoAck && result.photoAck.ok),
  };
  const all = need.every((k) => done[k]);
  if (force || all || (result.photoAck && !result.photoAck.ok)) {
    finished = true;
    result.ok = all;
    result.checked = need;
    // What the x-ray panel shows (read from the page itself).
    result.xray = { ...xray.state, dtlsShown: xray.dtlsShown() };
    fetch('/report', { method: 'POST', body: JSON.stringify({ type: 'result', room, ...result }) });
  }
}
if (autotest) setTimeout(() => maybeFinish(true), Number(params.get('limit') || 45) * 1000);

start();
