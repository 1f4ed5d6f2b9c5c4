// The packet x-ray panel, shared by the demo's page (/demo/) and the SFU's
// (/sfu/): the Rust side streams its capture's ladder as
// {"type":"xray","capture":URL,"truncated":bool,"lines":[…]} messages,
// rate-limited on its side (capture::live); each line expands to its
// decoded fields, and the download button hands over the pcapng so far.
//
//   const panel = XrayPanel(document.getElementById('xray'), {
//     who: 'the Rust peer', in: 'browser → rust', out: 'rust → browser',
//     file: 'rtclab-demo.pcapng' });
//   panel.show(message);       // for each xray message
//   panel.state                // counts, for tests: lines, layers, dtls
//   panel.dtlsShown()          // the DTLS lines as the page shows them
'use strict';

function XrayPanel(section, labels) {
  const MAX_LINES = 3000;
  const state = { lines: 0, dtls: [], layers: {}, capture: null, truncated: false };
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  };
  section.classList.add('xray');
  const h2 = el('h2', null, 'Packet x-ray ');
  h2.append(el('span', 'xray-dim', `(every datagram of the call, decoded layer by layer by ${labels.who}'s own parsers: ICE, DTLS, SCTP, DCEP, RTP per second, RTCP)`));
  const bar = el('div', 'xray-bar');
  const download = el('a', 'xray-button', 'Download capture (pcapng)');
  download.id = 'xray-download';
  download.download = labels.file;
  download.href = '#';
  const follow = el('input');
  follow.id = 'xray-follow';
  follow.type = 'checkbox';
  follow.checked = true;
  const followLabel = el('label');
  followLabel.append(follow, ' follow');
  const count = el('span', 'xray-dim', '0 lines');
  count.id = 'xray-count';
  const help = el('span', 'xray-dim');
  help.innerHTML = 'Click a line for its fields. The capture opens decrypted in Wireshark '
    + '(its DTLS keys are inside) and in <code>rtclab xray FILE</code>.';
  bar.append(download, followLabel, count, help);
  const ladder = el('div', 'xray-ladder');
  ladder.id = 'xray-ladder';
  ladder.setAttribute('role', 'log');
  ladder.setAttribute('aria-live', 'off');
  section.replaceChildren(h2, bar, ladder);

  function show(d) {
    section.hidden = false;
    if (d.capture) {
      state.capture = d.capture;
      download.href = d.capture;
    }
    state.truncated = !!d.truncated;
    const atEnd = ladder.scrollTop + ladder.clientHeight >= ladder.scrollHeight - 30;
    for (const l of d.lines || []) {
      const line = el('details', 'xray-line ' + l.layer + (l.plain ? ' plain' : ''));
      const sum = el('summary');
      sum.append(
        el('span', 't', l.t.toFixed(3)),
        el('span', 'dir', l.dir === 'in' ? labels.in : l.dir === 'out' ? labels.out : ''),
        el('span', 'layer', l.layer),
        el('span', 'text', l.text),
      );
      const pre = el('pre', null, (l.n ? 'packet ' + l.n + '  ' : '') + l.from + ' → ' + l.to
        + (l.plain ? '  (decrypted SRTP, srtp-plaintext interface)' : '')
        + (l.fields ? '\n' + l.fields : ''));
      line.append(sum, pre);
      ladder.append(line);
      state.lines++;
      state.layers[l.layer] = (state.layers[l.layer] || 0) + 1;
      if (l.layer === 'DTLS' && state.dtls.length < 40) state.dtls.push(l.text);
    }
    while (ladder.childElementCount > MAX_LINES) ladder.firstElementChild.remove();
    count.textContent = state.lines + ' lines'
      + (state.truncated ? ' (the capture reached its size limit: later packets are not in the download)' : '');
    if (follow.checked && atEnd) ladder.scrollTop = ladder.scrollHeight;
  }

  function dtlsShown() {
    return [...ladder.querySelectorAll('.xray-line.DTLS summary .text')].slice(0, 40).map((e) => e.textContent);
  }

  return { show, state, dtlsShown };
}
