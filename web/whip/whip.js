// WHIP (RFC 9725) and WHEP from a page, with fetch only.
//
// publish: getUserMedia, a sendonly transceiver, POST the offer to
//   /whip/ROOM (Content-Type: application/sdp, Authorization: Bearer), the
//   201's body is the answer and its Location the session; candidates found
//   later are trickled with PATCH (application/trickle-ice-sdpfrag,
//   If-Match: the ETag, RFC 8840 §9); Stop sends DELETE.
// play: the same with a recvonly transceiver and /whep/ROOM.
//
// With ?report=1 the page reports what happened to POST /report (the tests
// read it) and stops after a few seconds of media.
'use strict';

const q = new URLSearchParams(location.search);
const mode = q.get('mode') === 'play' ? 'play' : 'publish';
const room = q.get('room') || 'demo';
const token = q.get('token');
const autotest = q.get('report') === '1';
const result = { mode, room, patches: [] };

const $ = (id) => document.getElementById(id);
$('mode').textContent = mode;
$('room').textContent = room;
function log(line) {
  $('log').textContent += line + '\n';
  console.log('whip page: ' + line);
}
function status(s) { $('status').textContent = s; }

function auth(headers) {
  if (token) headers.Authorization = 'Bearer ' + token;
  return headers;
}

// One m-section's fragment: what RFC 8840 §9 asks a trickle PATCH to carry.
function fragment(pc, candidates, end) {
  const sdp = pc.localDescription.sdp;
  const ufrag = /a=ice-ufrag:(.*)/.exec(sdp)[1].trim();
  const pwd = /a=ice-pwd:(.*)/.exec(sdp)[1].trim();
  const mline = /m=(.*)/.exec(sdp)[1].trim();
  let text = 'a=ice-ufrag:' + ufrag + '\r\na=ice-pwd:' + pwd + '\r\n';
  text += 'm=' + mline + '\r\na=mid:0\r\n';
  for (const c of candidates) text += 'a=' + c + '\r\n';
  if (end) text += 'a=end-of-candidates\r\n';
  return text;
}

async function report(extra) {
  Object.assign(result, extra);
  log('result: ' + JSON.stringify(result));
  if (!autotest) return;
  await fetch('/report', { method: 'POST', body: JSON.stringify(result) });
}

async function main() {
  const pc = new RTCPeerConnection();
  let session = null; // { location, etag }
  const waiting = []; // candidates found before the 201
  let ended = false;
  let patching = Promise.resolve();

  function trickle(candidates, end) {
    patching = patching.then(async () => {
      const r = await fetch(session.location, {
        method: 'PATCH',
        headers: auth({
          'Content-Type': 'application/trickle-ice-sdpfrag',
          'If-Match': session.etag,
        }),
        body: fragment(pc, candidates, end),
      });
      result.patches.push(r.status);
      log('PATCH ' + candidates.length + ' candidate(s)' + (end ? ' + end' : '') + ': ' + r.status);
    });
  }

  pc.onicecandidate = (e) => {
    const c = e.candidate && e.candidate.candidate;
    if (c === '') return;
    if (!session) {
      if (c) waiting.push(c); else ended = true;
      return;
    }
    trickle(c ? [c] : [], !c);
  };

  if (mode === 'publish') {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    $('video').srcObject = stream;
    pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly' });
  } else {
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (e) => { $('video').srcObject = new MediaStream([e.track]); };
  }
  pc.onconnectionstatechange = () => {
    status(pc.connectionState);
    log('connection: ' + pc.connectionState);
  };

  await pc.setLocalDescription(await pc.createOffer());
  const prefix = mode === 'publish' ? '/whip/' : '/whep/';
  const r = await fetch(prefix + encodeURIComponent(room), {
    method: 'POST',
    headers: auth({ 'Content-Type': 'application/sdp' }),
    body: pc.localDescription.sdp,
  });
  result.post = r.status;
  log('POST ' + prefix + room + ': ' + r.status);
  if (r.status !== 201) {
    await report({ ok: false, error: await r.text() });
    return;
  }
  session = {
    location: new URL(r.headers.get('Location'), location.href).pathname,
    etag: r.headers.get('ETag'),
  };
  result.location = session.location;
  await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  if (waiting.length || ended) trickle(waiting.splice(0), ended);

  $('stop').disabled = false;
  $('stop').onclick = async () => {
    const d = await fetch(session.location, { method: 'DELETE', headers: auth({}) });
    log('DELETE: ' + d.status);
    pc.close();
    status('stopped');
  };
  if (!autotest) return;

  // The autotest: wait for media, then report and DELETE.
  const start = performance.now();
  let frames = 0;
  while (performance.now() - start < 20000) {
    await new Promise((ok) => setTimeout(ok, 250));
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (mode === 'publish' && s.type === 'outbound-rtp' && s.kind === 'video') {
        frames = s.framesEncoded || 0;
      }
      if (mode === 'play' && s.type === 'inbound-rtp' && s.kind === 'video') {
        frames = s.framesDecoded || 0;
      }
    });
    if (frames >= 30) break;
  }
  await patching;
  const d = await fetch(session.location, { method: 'DELETE', headers: auth({}) });
  result.delete = d.status;
  pc.close();
  await report({ ok: frames >= 30, frames, connection: pc.connectionState });
}

main().catch((e) => report({ ok: false, error: String(e) }));
