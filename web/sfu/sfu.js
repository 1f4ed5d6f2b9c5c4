// The SFU page: publish the camera and microphone once (three simulcast
// layers), receive everyone else's media from the SFU, chat with the room.
// The page offers once; after that only the SFU offers (when people come
// and go), and the page answers: two offers never cross.
'use strict';

const params = new URLSearchParams(location.search);
const room = params.get('room') || 'lobby';
const autotest = params.has('autotest');
// ?svc=L3T3_KEY: one scalable stream instead of simulcast (the SFU picks
// a decode target per subscriber from the Dependency Descriptor, or for
// VP9 from the VP9 payload descriptor);
// ?codec=AV1 (or VP9) sends that codec.
const svc = params.get('svc');
const codec = params.get('codec');
const simulcast = params.get('simulcast') !== '0' && !svc;
const $ = (id) => document.getElementById(id);
$('room').textContent = room;
const invite = `${location.origin}/sfu/?room=${encodeURIComponent(room)}`;
$('invite').textContent = invite;
$('invite').href = invite;

// Several SFU nodes (rtclab sfu --bus): each room lives on one node. A node
// that does not own the room sends this page to the one that does
// ({"type":"redirect"}); if the node dies, the page starts again from where
// it entered (`entry`, the load balancer's address) after a back-off, and
// publishes afresh on whichever node then owns the room.
const entry = params.get('entry') || location.origin;
const attempt = Number(params.get('retry') || 0);
let leaving = false;
function go(base, retry) {
  const q = new URLSearchParams(location.search);
  q.set('room', room);
  q.set('entry', entry);
  if (retry) q.set('retry', String(retry)); else q.delete('retry');
  leaving = true;
  location.replace(`${base}/sfu/?${q}`);
}
function again(why) {
  if (leaving) return;
  leaving = true;
  const delay = Math.min(500 * 2 ** attempt, 8000);
  status(`${why}; retrying in ${delay} ms`);
  setTimeout(() => { leaving = false; go(entry, attempt + 1); }, delay);
}

const pc = new RTCPeerConnection();
const chat = pc.createDataChannel('chat');
const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/sfu/ws?room=${encodeURIComponent(room)}`);
let me = null;
const tiles = new Map(); // stream id (the publisher's "pN") -> figure
const send = (m) => ws.send(JSON.stringify(m));
const status = (s) => { $('status').textContent = s; };
const log = (s) => {
  const p = document.createElement('div');
  p.textContent = s;
  $('log').append(p);
  $('log').scrollTop = 1e9;
};

function tile(id) {
  let f = tiles.get(id);
  if (!f) {
    f = document.createElement('figure');
    f.dataset.id = id;
    f.innerHTML = '<video autoplay playsinline></video><figcaption></figcaption>';
    f.querySelector('figcaption').textContent = id;
    $('grid').append(f);
    tiles.set(id, f);
  }
  return f;
}

function drop(id) {
  const f = tiles.get(id);
  if (f) { f.remove(); tiles.delete(id); }
}

// Join → first decoded frame, per stream: from the WebSocket opening (this
// page's join) and from the track's arrival (the SFU adding it), to the
// first frame the video element presents.
let joinedAt = null;
const firstFrame = new Map(); // stream id -> { sinceJoin, sinceTrack }
pc.ontrack = (e) => {
  const stream = e.streams[0];
  if (!stream) return;
  const v = tile(stream.id).querySelector('video');
  if (v.srcObject !== stream) v.srcObject = stream;
  if (e.track.kind === 'video' && !firstFrame.has(stream.id) && v.requestVideoFrameCallback) {
    const trackAt = performance.now();
    v.requestVideoFrameCallback(() => {
      const now = performance.now();
      firstFrame.set(stream.id, { sinceJoin: Math.round(now - (joinedAt ?? trackAt)), sinceTrack: Math.round(now - trackAt) });
    });
  }
  e.track.onended = () => { if (!stream.getTracks().some((t) => t.readyState === 'live')) drop(stream.id); };
  stream.onremovetrack = () => { if (stream.getTracks().length === 0) drop(stream.id); };
};
pc.onicecandidate = (e) => send({ type: 'candidate', candidate: e.candidate ? e.candidate.candidate : '' });
pc.onconnectionstatechange = () => {
  status(pc.connectionState);
  if (pc.connectionState === 'failed') again('media connection failed');
};

chat.onmessage = (e) => {
  let m;
  try { m = JSON.parse(e.data); } catch { return; }
  if (m.type === 'chat') log(`${m.from}: ${m.text}`);
  if (m.type === 'speaker') {
    for (const [id, f] of tiles) f.classList.toggle('speaking', id === m.id);
    $('tile-me').classList.toggle('speaking', m.id === me);
  }
};
$('send').onsubmit = (e) => {
  e.preventDefault();
  if (chat.readyState === 'open' && $('text').value) {
    chat.send($('text').value);
    log(`you: ${$('text').value}`);
    $('text').value = '';
  }
};

// With `rtclab sfu --xray`: the packet x-ray of this page's own connection
// to the SFU, as the SFU captured and decoded it (web/xray/panel.js, the
// demo's panel), with a download of this participant's own packets and
// DTLS secrets (pcapng: `rtclab xray FILE`, Wireshark).
const xray = XrayPanel($('xray'), {
  who: 'the SFU', in: 'you → sfu', out: 'sfu → you', file: 'rtclab-sfu.pcapng',
});
function showCapture(url) {
  if (!url) return;
  $('xray-download').download = `rtclab-sfu-${me}.pcapng`;
  xray.show({ capture: url, lines: [] });
}

ws.onmessage = async (e) => {
  const m = JSON.parse(e.data);
  switch (m.type) {
    case 'welcome':
      me = m.id;
      status(`joined as ${me}`);
      showCapture(m.capture);
      // ?maxkbps=N: receive at most N kbit/s (the SFU picks lower layers).
      if (params.has('maxkbps')) send({ type: 'limit', kbps: Number(params.get('maxkbps')) });
      break;
    case 'answer': await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp }); break;
    case 'offer':
      await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      send({ type: 'answer', sdp: pc.localDescription.sdp });
      break;
    case 'candidate': if (m.candidate) await pc.addIceCandidate({ candidate: m.candidate, sdpMid: '0' }); break;
    case 'joined': log(`${m.id} joined`); break;
    case 'left': log(`${m.id} left`); drop(m.id); break;
    case 'error': log(`error: ${m.message}`); status(`error: ${m.message}`); break;
    case 'redirect': go(new URL(m.url).origin, attempt); break;
    case 'xray': xray.show(m); break;
  }
};
ws.onclose = () => again('signaling closed');

async function start() {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 1280, height: 720, frameRate: 30 },
    audio: true,
  });
  $('me').srcObject = stream;
  const [video] = stream.getVideoTracks();
  const [audio] = stream.getAudioTracks();
  // Three layers, low to high: the SFU sends each subscriber the one its
  // link carries (RFC 8853 simulcast, one rid per layer).
  const sendEncodings = simulcast && video
    ? [
      { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
      { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
      { rid: 'h', maxBitrate: 1_500_000 },
    ]
    : undefined;
  const encodings = svc ? [{ scalabilityMode: svc }] : sendEncodings;
  if (video) {
    const t = pc.addTransceiver(video, { direction: 'sendonly', streams: [stream], sendEncodings: encodings });
    if (codec && t.setCodecPreferences) {
      const all = RTCRtpReceiver.getCapabilities('video').codecs;
      const wanted = all.filter((c) => c.mimeType.toLowerCase() === `video/${codec.toLowerCase()}`);
      if (wanted.length) t.setCodecPreferences([...wanted, ...all.filter((c) => !wanted.includes(c))]);
    }
    // ?dd=0: the Dependency Descriptor is not negotiated on the camera's
    // stream (Chromium then describes VP9 layers only in the VP9 payload
    // descriptor, which the SFU reads too).
    if (params.get('dd') === '0' && t.setHeaderExtensionsToNegotiate) {
      const dd = 'https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension';
      t.setHeaderExtensionsToNegotiate(t.getHeaderExtensionsToNegotiate()
        .map((e) => (e.uri === dd ? { ...e, direction: 'stopped' } : e)));
    }
  }
  if (audio) pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] });
  await pc.setLocalDescription(await pc.createOffer());
  send({ type: 'offer', sdp: pc.localDescription.sdp });
}

// For tests: what this page decodes from each other participant.
async function report() {
  const stats = await pc.getStats();
  const inbound = [];
  const outbound = [];
  const remote = [];
  let uplink = 0;
  let sentLayers = 0;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      const t = [...pc.getReceivers()].find((r) => r.track && r.track.id === s.trackIdentifier);
      inbound.push({ mid: s.mid, framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0, framesPerSecond: s.framesPerSecond || 0, bytesReceived: s.bytesReceived || 0 });
      void t;
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') inbound.push({ mid: s.mid, audio: true, samples: s.totalSamplesReceived || 0 });
    if (s.type === 'outbound-rtp' && s.kind === 'video' && (s.packetsSent || 0) > 0) {
      sentLayers += 1;
      outbound.push({ rid: s.rid, frameWidth: s.frameWidth || 0, limitation: s.qualityLimitationReason, targetBitrate: s.targetBitrate || 0, active: s.active, scalabilityMode: s.scalabilityMode || null, codecId: s.codecId || null, bytesSent: s.bytesSent || 0 });
    }
    if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) uplink = s.availableOutgoingBitrate;
    if (s.type === 'remote-inbound-rtp' && s.kind === 'video') remote.push({ ssrc: s.ssrc, fractionLost: s.fractionLost, packetsLost: s.packetsLost, rtt: s.roundTripTime });
  });
  const streams = {};
  for (const [id, f] of tiles) {
    const v = f.querySelector('video');
    streams[id] = { width: v.videoWidth, height: v.videoHeight, playing: v.currentTime > 0, firstFrame: firstFrame.get(id) ?? null };
  }
  const maxkbps = params.has('maxkbps') ? Number(params.get('maxkbps')) : null;
  const panel = { ...xray.state, dtlsShown: xray.dtlsShown() };
  return { type: 'report', me, maxkbps, connection: pc.connectionState, inbound, outbound, remote, uplink, streams, sentLayers, chat: $('log').textContent, xray: panel };
}
window.sfuReport = report;

ws.onopen = () => { joinedAt = performance.now(); }
ws.addEventListener('open', () => start().catch((e) => { status(`error: ${e}`); log(`${e}`); }));
if (autotest) {
  setInterval(async () => {
    const r = await report();
    fetch('/sfu/report', { method: 'POST', body: JSON.stringify(r) }).catch(() => {});
  }, 1000);
}
