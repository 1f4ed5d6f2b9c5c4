// Codelab step 6 with today's APIs: createDataChannel on one
// RTCPeerConnection, ondatachannel on the other, in one page. ?say=TEXT
// starts and sends TEXT once the channel is open; with ?report=1 the page
// POSTs what arrived to /report (tests/browser_pages.rs reads it).
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const say = params.get('say');
const report = params.get('report') === '1';

function status(text, ok) {
  $('status').textContent = text;
  $('status').className = 'status ' + (ok ? 'ok' : 'bad');
}

let local = null;
let remote = null;
let sendChannel = null;

// ANCHOR: channel
$('start').onclick = async () => {
  $('start').disabled = true;
  local = new RTCPeerConnection();
  remote = new RTCPeerConnection();
  local.onicecandidate = (e) => remote.addIceCandidate(e.candidate);
  remote.onicecandidate = (e) => local.addIceCandidate(e.candidate);

  // The channel must exist before the offer: it puts an
  // "m=application ... webrtc-datachannel" line into the SDP.
  sendChannel = local.createDataChannel('sendDataChannel');
  sendChannel.onopen = onSendChannelState;
  sendChannel.onclose = onSendChannelState;

  remote.ondatachannel = (event) => {
    const receiveChannel = event.channel;
    receiveChannel.onmessage = (e) => onReceived(receiveChannel.label, e.data);
  };

  const offer = await local.createOffer();
  await local.setLocalDescription(offer);
  await remote.setRemoteDescription(offer);
  const answer = await remote.createAnswer();
  await remote.setLocalDescription(answer);
  await local.setRemoteDescription(answer);
};

$('send').onclick = () => sendChannel.send($('send-text').value);
// ANCHOR_END: channel

function onSendChannelState() {
  const open = sendChannel.readyState === 'open';
  status('send channel ' + sendChannel.readyState, open);
  $('send-text').disabled = $('send').disabled = !open;
  $('stop').disabled = !open;
  if (open && say) {
    $('send-text').value = say;
    $('send').onclick();
  }
}

function onReceived(label, data) {
  $('received').value = data;
  if (report) {
    fetch('/report', {
      method: 'POST',
      body: JSON.stringify({ page: '06_datachannel', label, received: data,
        sctp: local.sctp ? { maxMessageSize: local.sctp.maxMessageSize, state: local.sctp.state } : null }),
    });
  }
}

$('stop').onclick = () => {
  sendChannel.close();
  local.close();
  remote.close();
  $('start').disabled = false;
  $('stop').disabled = true;
};

if (say) $('start').onclick().catch((e) => status('error: ' + e.message, false));
