// The browser half of tests/browser_datachannel.rs. The page joins ?room=
// on rtclab's signaling server, where the test's Rust PeerConnection waits,
// makes (offer=page) or takes (offer=rust) the offer, and runs one case on
// its data channels. It POSTs one JSON object to /report: {ok, error?, ...}.
//
// Signaling messages (the `data` of a room `message`):
//   {type:'offer'|'answer', sdp}  {type:'candidate', candidate, sdpMid,
//   sdpMLineIndex}  {type:'end-of-candidates'}
// Data-channel control messages are texts starting with 'ctl:'.
'use strict';

const params = new URLSearchParams(location.search);
const room = params.get('room');
const testCase = params.get('case');
const pageOffers = params.get('offer') !== 'rust';
const SIZES = [0, 1, 1024, 64 * 1024, 256 * 1024];
const BULK = 20 * 1024 * 1024;
const CHUNK = 64 * 1024;

const log = [];
let offerAt = null; // performance.now() when the offer left or arrived
function note(text) {
  const line = Math.round(performance.now()) + ' ms  ' + text;
  log.push(line);
  console.log('rtclab-page: ' + line);
  document.getElementById('log').textContent += line + '\n';
  // Progress goes to the test too, so a case that never reports still
  // leaves a trail.
  fetch('/report', { method: 'POST', body: JSON.stringify({ note: line }) }).catch(() => {});
}

let reported = false;
function report(result) {
  if (reported) return;
  reported = true;
  result.case = testCase;
  result.userAgent = navigator.userAgent;
  // The DTLS version and suite the browser negotiated (getStats'
  // transport: tlsVersion "FEFD" is DTLS 1.2, "FEFC" DTLS 1.3).
  pc.getStats()
    .then((stats) => {
      stats.forEach((t) => {
        if (t.type === 'transport' && t.tlsVersion) {
          // `transport` is the whole entry: a browser that names the key
          // exchange group (the spec's tlsGroup) shows it there.
          result.dtls = { tlsVersion: t.tlsVersion, cipher: t.dtlsCipher, state: t.dtlsState, transport: t };
        }
      });
    })
    .catch(() => {})
    .finally(() => {
      note('report: ' + JSON.stringify(result).slice(0, 300));
      fetch('/report', { method: 'POST', body: JSON.stringify(result) });
    });
}
function fail(error) {
  report({ ok: false, error: String(error && error.stack ? error.stack : error) });
}
window.onerror = (message, source, line) => fail('onerror: ' + message + ' at ' + source + ':' + line);
window.onunhandledrejection = (event) => fail(event.reason);

// ---- helpers ----------------------------------------------------------

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}
async function sha256(data) {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}
function randomBytes(n) {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}
function text(n) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return alphabet.repeat(Math.ceil(n / alphabet.length) + 1).slice(0, n);
}
function describe(m) {
  return typeof m === 'string' ? 'text ' + m.length : 'binary ' + m.byteLength;
}
// The next message on `dc`, as a promise (one reader at a time).
function receiver(dc) {
  const queue = [];
  const waiting = [];
  dc.addEventListener('message', (event) => {
    if (waiting.length) waiting.shift()(event.data);
    else queue.push(event.data);
  });
  return () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiting.push(r)));
}
function opened(dc) {
  return dc.readyState === 'open'
    ? Promise.resolve()
    : new Promise((resolve) => dc.addEventListener('open', resolve, { once: true }));
}
// Sends `data` (a Uint8Array) in CHUNK pieces, keeping at most 4 MiB queued.
async function sendBulk(dc, data) {
  dc.bufferedAmountLowThreshold = 1024 * 1024;
  for (let off = 0; off < data.length; off += CHUNK) {
    if (dc.bufferedAmount > 4 * 1024 * 1024) {
      await new Promise((r) => dc.addEventListener('bufferedamountlow', r, { once: true }));
    }
    dc.send(data.subarray(off, Math.min(data.length, off + CHUNK)));
  }
}

// ---- the cases (each gets its channels once the peer connection has them)

const CHANNELS = {
  echo: [['echo', {}]],
  kinds: [
    ['ordered', {}],
    ['unordered', { ordered: false }],
    ['rexmit0', { maxRetransmits: 0 }],
  ],
  bulk: [['bulk', {}]],
  'close-page': [['c', {}]],
  'close-rust': [['c', {}]],
  quiet: [['quiet', {}]],
};

const cases = {
  // Rust sends lone messages; the page keeps quiet for 300 ms after each
  // before asking for the next, so no DATA of its own carries the SACK.
  // Rust then checks that none of its messages waited for a timeout (the
  // I bit, RFC 9260 §3.3.1, makes the browser SACK at once).
  async quiet([dc]) {
    const next = receiver(dc);
    await opened(dc);
    const got = [];
    dc.send('ctl:next');
    for (let i = 0; i < 5; i++) {
      got.push(await next());
      note('quiet got ' + got[got.length - 1]);
      await new Promise((r) => setTimeout(r, 300));
      if (i < 4) dc.send('ctl:next');
    }
    report({ ok: got.join(',') === 'm0,m1,m2,m3,m4', got });
  },
  // Text and binary of each size, page → Rust → page (compared by hash);
  // then 'ctl:your-turn' and the page echoes what Rust sends.
  async echo([dc]) {
    const next = receiver(dc);
    await opened(dc);
    const openMs = performance.now();
    note('echo open');
    const sent = [];
    for (const n of SIZES) sent.push(text(n));
    for (const n of SIZES) sent.push(randomBytes(n));
    for (const m of sent) dc.send(m);
    const results = [];
    for (const m of sent) {
      const back = await next();
      const same =
        typeof back === typeof m && (await sha256(back)) === (await sha256(m));
      results.push({ sent: describe(m), back: describe(back), same });
    }
    note('page → Rust → page done');
    // Rust's turn: echo everything it sends.
    dc.onmessage = (event) => {
      if (typeof event.data === 'string' && event.data.startsWith('ctl:')) return;
      dc.send(event.data);
    };
    dc.send('ctl:your-turn');
    report({
      ok: results.every((r) => r.same),
      openMs,
      offerToOpenMs: openMs - offerAt,
      results,
      label: dc.label,
      id: dc.id,
    });
  },

  // Three kinds of channel: 20 messages each way on each.
  async kinds(dcs) {
    const out = [];
    await Promise.all(
      dcs.map(async (dc) => {
        const next = receiver(dc);
        await opened(dc);
        for (let i = 0; i < 20; i++) dc.send(dc.label + ':' + i);
        const got = [];
        for (let i = 0; i < 20; i++) got.push(await next());
        got.sort((a, b) => Number(a.split(':')[1]) - Number(b.split(':')[1]));
        const ok = got.every((m, i) => m === dc.label + ':' + i);
        out.push({
          label: dc.label,
          ordered: dc.ordered,
          maxRetransmits: dc.maxRetransmits,
          maxPacketLifeTime: dc.maxPacketLifeTime,
          ok,
        });
      }),
    );
    report({ ok: out.every((c) => c.ok), channels: out });
  },

  // 20 MiB page → Rust, then Rust → page, then between two peer
  // connections on this page; MiB/s for each.
  async bulk([dc]) {
    const next = receiver(dc);
    await opened(dc);
    const openMs = performance.now();
    const data = randomBytes(BULK);
    const digest = await sha256(data);
    let t0 = performance.now();
    await sendBulk(dc, data);
    dc.send('ctl:end:' + digest);
    const answer = await next();
    const upSeconds = (performance.now() - t0) / 1000;
    const upOk = answer === 'ctl:sha:' + digest;
    note('up ' + (BULK / 1048576 / upSeconds).toFixed(1) + ' MiB/s, ' + answer);

    // Rust → page.
    const into = new Uint8Array(BULK);
    let got = 0;
    t0 = performance.now();
    dc.send('ctl:send-me');
    let end;
    for (;;) {
      const m = await next();
      if (typeof m === 'string') {
        end = m;
        break;
      }
      const bytes = new Uint8Array(m);
      if (got + bytes.length > BULK) throw new Error('Rust sent too much');
      into.set(bytes, got);
      got += bytes.length;
    }
    const downSeconds = (performance.now() - t0) / 1000;
    const downDigest = await sha256(into.subarray(0, got));
    dc.send('ctl:sha:' + downDigest);
    const downOk = got === BULK && end === 'ctl:end:' + downDigest;
    note('down ' + (BULK / 1048576 / downSeconds).toFixed(1) + ' MiB/s, ' + got + ' bytes, ' + end);

    // The same transfer between two peer connections of this browser.
    const local = await localTransfer(data, digest);
    report({
      ok: upOk && downOk && local.ok,
      openMs,
      upOk,
      downOk,
      upMiBps: BULK / 1048576 / upSeconds,
      downMiBps: BULK / 1048576 / downSeconds,
      localMiBps: local.MiBps,
      localOk: local.ok,
      received: got,
    });
  },

  // The page closes the channel after one echo; it reports when onclose
  // fires (Rust must have seen the stream reset and reset its side).
  async 'close-page'([dc]) {
    const next = receiver(dc);
    await opened(dc);
    dc.send('hello');
    const back = await next();
    const closed = new Promise((r) => (dc.onclose = r));
    dc.close();
    await closed;
    report({ ok: back === 'hello', closedBy: 'page', readyState: dc.readyState });
  },

  // The page asks Rust to close, and reports when onclose fires.
  async 'close-rust'([dc]) {
    await opened(dc);
    const closed = new Promise((r) => (dc.onclose = r));
    dc.send('ctl:close-me');
    await closed;
    report({ ok: true, closedBy: 'rust', readyState: dc.readyState });
  },
};

async function localTransfer(data, digest) {
  const a = new RTCPeerConnection();
  const b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  const dc = a.createDataChannel('bulk');
  const incoming = new Promise((r) => (b.ondatachannel = (e) => r(e.channel)));
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  const rx = await incoming;
  rx.binaryType = 'arraybuffer';
  await opened(dc);
  await opened(rx);
  const into = new Uint8Array(data.length);
  let got = 0;
  const done = new Promise((resolve) => {
    rx.onmessage = (e) => {
      into.set(new Uint8Array(e.data), got);
      got += e.data.byteLength;
      if (got >= data.length) resolve();
    };
  });
  const t0 = performance.now();
  await sendBulk(dc, data);
  await done;
  const seconds = (performance.now() - t0) / 1000;
  const ok = (await sha256(into)) === digest;
  a.close();
  b.close();
  note('local ' + (data.length / 1048576 / seconds).toFixed(1) + ' MiB/s');
  return { ok, MiBps: data.length / 1048576 / seconds };
}

// ---- the peer connection and signaling ---------------------------------

const pc = new RTCPeerConnection();
const ws = new WebSocket('ws://' + location.host + '/ws');
let remoteSet = false;
const early = [];

function signal(data) {
  ws.send(JSON.stringify({ type: 'message', data }));
}

pc.onicecandidate = (e) => {
  if (e.candidate && e.candidate.candidate) {
    note('local ' + e.candidate.candidate);
    signal({
      type: 'candidate',
      candidate: e.candidate.candidate,
      sdpMid: e.candidate.sdpMid,
      sdpMLineIndex: e.candidate.sdpMLineIndex,
    });
  } else if (!e.candidate) {
    signal({ type: 'end-of-candidates' });
  }
};
pc.oniceconnectionstatechange = () => note('ice ' + pc.iceConnectionState);
pc.onconnectionstatechange = () => {
  note('connection ' + pc.connectionState);
  if (pc.connectionState === 'failed') fail('the peer connection failed');
};

// The selected candidate pair, noted when it changes (ICE trouble shows
// here first).
let lastPair = '';
setInterval(async () => {
  const stats = await pc.getStats();
  stats.forEach((t) => {
    if (t.type !== 'transport' || !t.selectedCandidatePairId) return;
    const p = stats.get(t.selectedCandidatePairId);
    const l = p && stats.get(p.localCandidateId);
    const r = p && stats.get(p.remoteCandidateId);
    const text = l && r ? l.address + ':' + l.port + ' → ' + r.address + ':' + r.port : '?';
    if (text !== lastPair) note('selected pair ' + text);
    lastPair = text;
  });
}, 250);

// The case's channels: made here (offer=page) or awaited from Rust.
function channels() {
  const wanted = CHANNELS[testCase];
  if (!wanted) throw new Error('no such case ' + testCase);
  if (pageOffers) {
    return Promise.resolve(
      wanted.map(([label, init]) => {
        const dc = pc.createDataChannel(label, init);
        dc.binaryType = 'arraybuffer';
        return dc;
      }),
    );
  }
  return new Promise((resolve) => {
    const got = new Map();
    pc.ondatachannel = (e) => {
      const dc = e.channel;
      dc.binaryType = 'arraybuffer';
      note('datachannel ' + dc.label + ' id ' + dc.id);
      got.set(dc.label, dc);
      if (wanted.every(([label]) => got.has(label))) resolve(wanted.map(([label]) => got.get(label)));
    };
  });
}

async function remoteDescription(description) {
  await pc.setRemoteDescription(description);
  remoteSet = true;
  for (const c of early.splice(0)) await pc.addIceCandidate(c);
}

ws.onopen = () => ws.send(JSON.stringify({ type: 'create or join', room }));
ws.onmessage = async (event) => {
  const m = JSON.parse(event.data);
  if (m.type === 'error') fail('signaling: ' + m.reason);
  if (m.type === 'ready' && pageOffers && !pc.localDescription) {
    const dcs = channels();
    await pc.setLocalDescription(await pc.createOffer());
    offerAt = performance.now();
    note('offer sent');
    signal({ type: 'offer', sdp: pc.localDescription.sdp });
    cases[testCase](await dcs).catch(fail);
  }
  if (m.type !== 'message') return;
  const d = m.data;
  if (d.type === 'offer') {
    offerAt = performance.now();
    note('offer received');
    const dcs = channels();
    await remoteDescription({ type: 'offer', sdp: d.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    signal({ type: 'answer', sdp: pc.localDescription.sdp });
    cases[testCase](await dcs).catch(fail);
  } else if (d.type === 'answer') {
    note('answer received');
    await remoteDescription({ type: 'answer', sdp: d.sdp });
  } else if (d.type === 'candidate') {
    note('remote ' + d.candidate);
    const c = { candidate: d.candidate, sdpMid: d.sdpMid, sdpMLineIndex: d.sdpMLineIndex };
    if (remoteSet) await pc.addIceCandidate(c);
    else early.push(c);
  }
};
