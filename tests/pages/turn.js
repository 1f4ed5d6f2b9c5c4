// The browser half of tests/browser_turn.rs. The page gathers relay
// candidates only, from the TURN server the URL names, offers a data
// channel to the Rust peer in ?room=, sends 'ping from the page' and waits
// for its echo and for 'hello from rust', then reports the selected
// candidate pair from getStats: {ok, local: {candidateType,
// relayProtocol, ...}, remote: {...}}.
'use strict';

const params = new URLSearchParams(location.search);
const room = params.get('room');
const iceServers = [{ urls: params.get('turn'), username: params.get('user'), credential: params.get('pass') }];

function note(text) {
  const line = Math.round(performance.now()) + ' ms  ' + text;
  console.log('rtclab-page: ' + line);
  document.getElementById('log').textContent += line + '\n';
  fetch('/report', { method: 'POST', body: JSON.stringify({ note: line }) }).catch(() => {});
}
let reported = false;
function report(result) {
  if (reported) return;
  reported = true;
  note('report: ' + JSON.stringify(result));
  fetch('/report', { method: 'POST', body: JSON.stringify(result) });
}
function fail(error) {
  report({ ok: false, error: String(error && error.stack ? error.stack : error) });
}
window.onerror = (message, source, line) => fail('onerror: ' + message + ' at ' + source + ':' + line);
window.onunhandledrejection = (event) => fail(event.reason);

const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: 'relay' });
const ws = new WebSocket('ws://' + location.host + '/ws');
function signal(data) {
  ws.send(JSON.stringify({ type: 'message', data }));
}
pc.onicecandidate = (e) => {
  if (e.candidate && e.candidate.candidate) {
    note('local ' + e.candidate.candidate);
    signal({ type: 'candidate', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex });
  } else if (!e.candidate) {
    signal({ type: 'end-of-candidates' });
  }
};
pc.onicecandidateerror = (e) => note('candidate error ' + e.errorCode + ' ' + e.errorText + ' ' + e.url);
pc.oniceconnectionstatechange = () => note('ice ' + pc.iceConnectionState);
pc.onconnectionstatechange = () => {
  note('connection ' + pc.connectionState);
  if (pc.connectionState === 'failed') fail('the peer connection failed');
};

const dc = pc.createDataChannel('echo');
const got = [];
dc.onmessage = (e) => {
  note('received ' + e.data);
  got.push(e.data);
  if (got.includes('echo: ping from the page') && got.includes('hello from rust')) finish();
};
dc.onopen = () => {
  note('channel open');
  dc.send('ping from the page');
};

async function finish() {
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((t) => {
    if (t.type === 'transport' && t.selectedCandidatePairId) pair = stats.get(t.selectedCandidatePairId);
  });
  if (!pair) {
    stats.forEach((t) => {
      if (t.type === 'candidate-pair' && t.nominated && t.state === 'succeeded') pair = t;
    });
  }
  if (!pair) return fail('no selected candidate pair in getStats');
  const pick = (c) => c && { candidateType: c.candidateType, relayProtocol: c.relayProtocol, protocol: c.protocol, address: c.address, port: c.port };
  report({ ok: true, messages: got, local: pick(stats.get(pair.localCandidateId)), remote: pick(stats.get(pair.remoteCandidateId)) });
}

ws.onopen = () => ws.send(JSON.stringify({ type: 'create or join', room }));
let remoteSet = false;
const early = [];
ws.onmessage = async (event) => {
  const m = JSON.parse(event.data);
  if (m.type === 'error') fail('signaling: ' + m.reason);
  if (m.type === 'ready' && !pc.localDescription) {
    note('room ready: offering');
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    signal({ type: 'offer', sdp: offer.sdp });
  } else if (m.type === 'message') {
    const d = m.data;
    if (d.type === 'answer') {
      note('answer');
      await pc.setRemoteDescription({ type: 'answer', sdp: d.sdp });
      remoteSet = true;
      for (const c of early.splice(0)) await pc.addIceCandidate(c).catch((e) => note('addIceCandidate: ' + e));
    } else if (d.type === 'candidate' || d.type === 'end-of-candidates') {
      const c = d.type === 'candidate' ? { candidate: d.candidate, sdpMid: d.sdpMid, sdpMLineIndex: d.sdpMLineIndex } : null;
      note('remote ' + (c ? c.candidate : 'end-of-candidates'));
      if (!remoteSet) early.push(c);
      else await pc.addIceCandidate(c).catch((e) => note('addIceCandidate: ' + e));
    }
  }
};
