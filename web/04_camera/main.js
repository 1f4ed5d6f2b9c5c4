// Codelab step 4 with today's APIs: the camera into a <video>, and the same
// frames drawn as ASCII art. With ?report=1 the page POSTs what it saw to
// /report (tests/browser_pages.rs reads it).
'use strict';

const $ = (id) => document.getElementById(id);
const report = new URLSearchParams(location.search).get('report') === '1';
const result = { frames: 0, width: 0, height: 0, ascii: '', error: null };

function status(text, ok) {
  $('status').textContent = text;
  $('status').className = 'status ' + (ok ? 'ok' : 'bad');
}

// ANCHOR: getusermedia
const constraints = { video: true, audio: false };

async function start() {
  const stream = await navigator.mediaDevices.getUserMedia(constraints);
  const video = $('local');
  video.srcObject = stream;
  const [track] = stream.getVideoTracks();
  status('playing “' + track.label + '”', true);
  video.requestVideoFrameCallback(function onFrame() {
    result.frames += 1;
    drawAscii(video);
    video.requestVideoFrameCallback(onFrame);
  });
}
// ANCHOR_END: getusermedia

// ANCHOR: ascii
const RAMP = ' .:-=+*#%@'; // dark to bright

function drawAscii(video) {
  const canvas = $('small');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
  const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
  let text = '';
  for (let y = 0; y < canvas.height; y++) {
    for (let x = 0; x < canvas.width; x++) {
      const i = (y * canvas.width + x) * 4;
      const luma = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      text += RAMP[Math.min(RAMP.length - 1, Math.floor(luma / 256 * RAMP.length))];
    }
    text += '\n';
  }
  $('ascii').textContent = text;
  result.ascii = text;
  result.width = video.videoWidth;
  result.height = video.videoHeight;
  maybeReport();
}
// ANCHOR_END: ascii

let reported = false;
function maybeReport() {
  if (!report || reported || result.frames < 30) return;
  reported = true;
  fetch('/report', { method: 'POST', body: JSON.stringify({ page: '04_camera', ...result }) });
}

start().catch((e) => {
  status('no camera: ' + e.name + (e.message ? ' (' + e.message + ')' : ''), false);
  result.error = e.name;
  if (report) fetch('/report', { method: 'POST', body: JSON.stringify({ page: '04_camera', ...result }) });
});
