// Codelab step 5 with today's APIs (addTrack/ontrack, promises): a local
// and a remote RTCPeerConnection in one page. ?auto=1 presses Start and
// Call; with ?report=1 the page POSTs what the remote side decoded to
// /report (tests/browser_pages.rs reads it).
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const report = params.get('report') === '1';

function log(text) { $('log').textContent += text + '\n'; }
function status(text, ok) {
  $('status').textContent = text;
  $('status').className = 'status ' + (ok ? 'ok' : 'bad');
}

let localStream = null;
let pc1 = null; // the caller: sends the camera
let pc2 = null; // the callee: receives it

$('start').onclick = async () => {
  localStream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  $('local').srcObject = localStream;
  $('start').disabled = true;
  $('call').disabled = false;
  status('camera on; press Call', true);
};

// ANCHOR: call
$('call').onclick = async () => {
  $('call').disabled = true;
  $('hangup').disabled = false;
  pc1 = new RTCPeerConnection();
  pc2 = new RTCPeerConnection();
  // Each side's candidates go straight to the other: the "signaling".
  pc1.onicecandidate = (e) => pc2.addIceCandidate(e.candidate);
  pc2.onicecandidate = (e) => pc1.addIceCandidate(e.candidate);
  pc1.oniceconnectionstatechange = () => log('pc1 ICE state: ' + pc1.iceConnectionState);
  pc2.ontrack = (e) => {
    if ($('remote').srcObject !== e.streams[0]) {
      $('remote').srcObject = e.streams[0];
      log('pc2 received the remote stream');
    }
  };
  for (const track of localStream.getTracks()) pc1.addTrack(track, localStream);

  const offer = await pc1.createOffer();
  await pc1.setLocalDescription(offer);   // pc1: have-local-offer
  await pc2.setRemoteDescription(offer);  // pc2: have-remote-offer
  const answer = await pc2.createAnswer();
  await pc2.setLocalDescription(answer);  // pc2: stable
  await pc1.setRemoteDescription(answer); // pc1: stable
  log('offer:\n' + offer.sdp);
  status('calling', true);
};
// ANCHOR_END: call

// ANCHOR: hangup
$('hangup').onclick = () => {
  pc1.close();
  pc2.close();
  pc1 = pc2 = null;
  $('hangup').disabled = true;
  $('call').disabled = false;
  status('hung up', true);
};
// ANCHOR_END: hangup

// What the receiving side decoded, from its getStats(); the test reads it.
async function watch() {
  if (!pc2) return;
  let inbound = null;
  (await pc2.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') inbound = s;
  });
  if (!inbound) return;
  const v = $('remote');
  status('remote: ' + inbound.framesDecoded + ' frames decoded, ' + v.videoWidth + '×' + v.videoHeight, true);
  if (report && inbound.framesDecoded >= 30 && v.videoWidth > 0 && !watch.done) {
    watch.done = true;
    fetch('/report', {
      method: 'POST',
      body: JSON.stringify({
        page: '05_peerconnection', framesDecoded: inbound.framesDecoded,
        width: v.videoWidth, height: v.videoHeight, codec: inbound.codecId || '',
        ice: pc1.iceConnectionState, signaling: [pc1.signalingState, pc2.signalingState],
      }),
    });
  }
}
setInterval(watch, 500);

if (params.get('auto') === '1') {
  $('start').onclick().then(() => $('call').onclick()).catch((e) => status('error: ' + e.message, false));
}
