//! `rtclab xray FILE`: a capture (pcapng or pcap) as a ladder, one line per
//! packet and layer, decoded by rtclab's parsers (see
//! `rtclab::capture::xray`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rtclab::capture::xray::{Filter, Layer, decode, render, svg};

/// The arguments of `rtclab xray`.
#[derive(Args)]
pub struct XrayArgs {
    /// The capture: rtclab's pcapng (with its key log it decrypts DTLS),
    /// tshark's or dumpcap's pcapng, or a classic pcap.
    file: PathBuf,
    /// Only these layers, comma-separated: stun, dtls, sctp, dcep, rtp, rtcp, tcp.
    #[arg(long, value_delimiter = ',')]
    layer: Vec<String>,
    /// Only packets from this many seconds after the first one.
    #[arg(long)]
    from: Option<f64>,
    /// Only packets up to this many seconds after the first one.
    #[arg(long)]
    to: Option<f64>,
    /// Also write the (filtered) ladder as an SVG sequence diagram here.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

fn seconds(s: Option<f64>, flag: &str) -> Result<Option<Duration>, String> {
    s.map(|s| Duration::try_from_secs_f64(s).map_err(|e| format!("{flag} {s}: {e}")))
        .transpose()
}

/// Prints the ladder.
pub fn run(args: XrayArgs) -> Result<(), String> {
    let layers = args
        .layer
        .iter()
        .map(|l| {
            Layer::parse(l).ok_or_else(|| {
                format!("unknown layer {l:?} (stun, dtls, sctp, dcep, rtp, rtcp, tcp)")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let filter = Filter {
        layers,
        from: seconds(args.from, "--from")?,
        to: seconds(args.to, "--to")?,
    };
    let data = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let cap = rtclab::capture::pcapng::read(&data)
        .map_err(|e| format!("{}: {e}", args.file.display()))?;
    let lines = decode(&cap);
    // A closed pipe (`rtclab xray FILE | head`) ends the output quietly.
    use std::io::Write as _;
    let text = render(&lines, &filter);
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.to_string()),
        _ => {}
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, svg(&lines, &filter))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
