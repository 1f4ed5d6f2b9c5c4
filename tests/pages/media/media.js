// The browser half of tests/browser_media.rs. One case per page load:
//   send    camera -> Rust (sendonly), codec from ?codec=
//   recv    Rust -> page (recvonly video)
//   reflect camera -> Rust -> page (sendrecv video)
//   audio   microphone -> Rust -> page (sendrecv audio)
//   reneg   camera sendonly; on {"type":"add-track"} the page adds a second
//           camera track (a new offer from the page); Rust later offers a
//           track of its own, which the page answers.
// Every 500 ms the page POSTs {case, state, inbound[], outbound[], log[]}.
'use strict';
const q = new URLSearchParams(location.search);
const CASE = q.get('case') || 'send';
const CODEC = (q.get('codec') || 'VP8').toUpperCase();
const lines = [];
function log(s) {
  lines.push((performance.now() / 1000).toFixed(2) + ' ' + s);
  document.getElementById('log').textContent = lines.join('\n');
}
window.onerror = (m) => log('error: ' + m);
window.onunhandledrejection = (e) => log('rejection: ' + (e.reason && e.reason.message || e.reason));

const ws = new WebSocket('ws://' + location.host + '/ws');
let pc = null;
let camera = null;
let seq = 0;
function signal(data) { ws.send(JSON.stringify({ type: 'message', data })); }

ws.onopen = () => ws.send(JSON.stringify({ type: 'create or join', room: q.get('room') || 'media' }));
ws.onmessage = async (ev) => {
  const m = JSON.parse(ev.data);
  if (m.type === 'joined') { start().catch((e) => log('start failed: ' + e)); return; }
  if (m.type !== 'message') return;
  const d = m.data;
  try {
    if (d.type === 'answer') {
      await pc.setRemoteDescription(d);
      log('answer applied');
    } else if (d.type === 'offer') {
      log('offer from Rust');
      await pc.setRemoteDescription(d);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      signal({ type: 'answer', sdp: pc.localDescription.sdp });
      log('answered Rust');
    } else if (d.type === 'candidate') {
      if (d.candidate) await pc.addIceCandidate({ candidate: d.candidate, sdpMid: d.sdpMid, sdpMLineIndex: d.sdpMLineIndex });
    } else if (d.type === 'add-track') {
      const extra = camera.getVideoTracks()[0].clone();
      const t = pc.addTransceiver(extra, { direction: 'sendonly' });
      prefer(t, 'video');
      log('added a second camera track');
    }
  } catch (e) {
    log('signal ' + d.type + ' failed: ' + e);
  }
};

function prefer(transceiver, kind) {
  if (kind !== 'video' || !transceiver.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities('video').codecs;
  let first = caps.filter((c) => c.mimeType.toUpperCase() === 'VIDEO/' + CODEC);
  if (CODEC === 'H264') {
    // packetization-mode=1, constrained baseline first.
    first = first.filter((c) => (c.sdpFmtpLine || '').includes('packetization-mode=1'));
    first.sort((a, b) => (b.sdpFmtpLine || '').includes('42e01f') - (a.sdpFmtpLine || '').includes('42e01f'));
  } else if (CODEC === 'VP9') {
    // Profile 0 (8-bit 4:2:0) only: the one rtclab takes.
    first = first.filter((c) => !/profile-id=[1-3]/.test(c.sdpFmtpLine || ''));
  }
  const rest = caps.filter((c) => !first.includes(c) && !/H264|VP8|VP9|AV1/i.test(c.mimeType));
  if (first.length) transceiver.setCodecPreferences(first.concat(rest));
}

async function start() {
  pc = new RTCPeerConnection();
  pc.onicecandidate = (e) => signal(e.candidate
    ? { type: 'candidate', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex }
    : { type: 'candidate', candidate: '' });
  pc.onconnectionstatechange = () => log('connection ' + pc.connectionState);
  pc.ontrack = (e) => {
    log('track ' + e.track.kind + ' mid ' + e.transceiver.mid);
    const el = document.createElement(e.track.kind === 'video' ? 'video' : 'audio');
    el.autoplay = true;
    el.muted = e.track.kind === 'video';
    el.srcObject = new MediaStream([e.track]);
    document.getElementById('remote').appendChild(el);
    el.play().catch((err) => log('play: ' + err));
  };
  pc.onnegotiationneeded = async () => {
    if (!pc.remoteDescription) return; // the first offer is made below
    log('negotiation needed: offering again');
    await pc.setLocalDescription(await pc.createOffer());
    signal({ type: 'offer', sdp: pc.localDescription.sdp });
  };
  const video = { width: { exact: 320 }, height: { exact: 240 }, frameRate: 30 };
  if (CASE === 'send' || CASE === 'reflect' || CASE === 'reneg') {
    camera = await navigator.mediaDevices.getUserMedia({ video }).catch(() => navigator.mediaDevices.getUserMedia({ video: true }));
    document.getElementById('local').srcObject = camera;
    const t = pc.addTransceiver(camera.getVideoTracks()[0], { direction: CASE === 'reflect' ? 'sendrecv' : 'sendonly' });
    prefer(t, 'video');
  } else if (CASE === 'recv') {
    const t = pc.addTransceiver('video', { direction: 'recvonly' });
    prefer(t, 'video');
  } else if (CASE === 'photo') {
    // Codelab step 9: a canvas snapshot of the camera, its RGBA pixels sent
    // in 64000-byte chunks after a header with the length and SHA-256.
    camera = await navigator.mediaDevices.getUserMedia({ video });
    const v = document.getElementById('local');
    v.srcObject = camera;
    const ch = pc.createDataChannel('photo');
    ch.binaryType = 'arraybuffer';
    ch.onopen = () => setTimeout(async () => {
      const canvas = document.createElement('canvas');
      canvas.width = 320; canvas.height = 240;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(v, 0, 0, 320, 240);
      const pixels = ctx.getImageData(0, 0, 320, 240).data;
      const hash = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', pixels)))
        .map((b) => b.toString(16).padStart(2, '0')).join('');
      ch.send(JSON.stringify({ bytes: pixels.byteLength, sha256: hash }));
      const CHUNK = 64000;
      for (let off = 0; off < pixels.byteLength; off += CHUNK) {
        ch.send(pixels.slice(off, off + CHUNK));
      }
      log('photo sent: ' + pixels.byteLength + ' bytes, sha256 ' + hash);
    }, 1000);
    ch.onmessage = (e) => log('photo reply: ' + e.data);
  } else if (CASE === 'audio') {
    const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    pc.addTransceiver(mic.getAudioTracks()[0], { direction: 'sendrecv' });
  }
  await pc.setLocalDescription(await pc.createOffer());
  signal({ type: 'offer', sdp: pc.localDescription.sdp });
  log('offered (' + CASE + ', ' + CODEC + ')');
  setInterval(report, 500);
}

async function report() {
  const inbound = [];
  const outbound = [];
  const codecs = {};
  let dtls = null;
  try {
    const stats = await pc.getStats();
    stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
    // The transport's DTLS version ("FEFC" is 1.3), suite and the rest of
    // the entry (tests/browser_dtls13.rs reads it).
    stats.forEach((s) => { if (s.type === 'transport' && s.tlsVersion) dtls = { tlsVersion: s.tlsVersion, cipher: s.dtlsCipher, transport: s }; });
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        inbound.push({
          kind: s.kind, mid: s.mid, codec: codecs[s.codecId] || null, ssrc: s.ssrc,
          packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0,
          framesReceived: s.framesReceived || 0, framesDecoded: s.framesDecoded || 0,
          keyFramesDecoded: s.keyFramesDecoded || 0, framesDropped: s.framesDropped || 0,
          pliCount: s.pliCount || 0, nackCount: s.nackCount || 0,
          frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
          totalSamplesReceived: s.totalSamplesReceived || 0, concealedSamples: s.concealedSamples || 0,
          decoderImplementation: s.decoderImplementation || null,
        });
      } else if (s.type === 'outbound-rtp') {
        outbound.push({
          kind: s.kind, mid: s.mid, codec: codecs[s.codecId] || null,
          packetsSent: s.packetsSent || 0, framesEncoded: s.framesEncoded || 0,
          keyFramesEncoded: s.keyFramesEncoded || 0, pliCount: s.pliCount || 0,
          frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
        });
      }
    });
  } catch (e) {
    log('getStats failed: ' + e);
  }
  const body = JSON.stringify({
    seq: seq++, case: CASE, codec: CODEC,
    state: pc ? pc.connectionState : 'none', inbound, outbound, dtls, log: lines,
  });
  fetch('/report', { method: 'POST', body }).catch(() => {});
}
