//! Chapter 7: a signaling server.
//!
//! Starts rtclab's signaling server on a free loopback port, then two
//! WebSocket clients, alice and bob, play codelab step 7: alice creates a
//! room, bob joins it, they trade an "offer" and an "answer" (the server
//! relays them without looking inside), a third member finds the room
//! full, a malformed message gets an error, and bob leaves. Every JSON text
//! frame on the wire is printed as it goes.
//!
//! Run it with `cargo run --example 07_signaling`; for the browser side,
//! run `cargo run -- signaling` and open http://127.0.0.1:8080/07_signaling/
//! in two tabs. `-- --pcap FILE` writes the clients' TCP connections (the
//! HTTP upgrade and every WebSocket frame) for `rtclab xray FILE` or
//! Wireshark.

use std::error::Error;
use std::io::Write;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtclab::signaling::{ClientMessage, Config, Server};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
pub mod pcap;

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// Runs the whole scene, printing to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(scene(out))?;
    pcap::save_tcp()?;
    Ok(())
}

// ANCHOR: client
/// A WebSocket client that prints every frame it sends and receives.
struct Client {
    name: &'static str,
    ws: WebSocketStream<pcap::Recorded<TcpStream>>,
}

impl Client {
    async fn connect(name: &'static str, url: &str) -> Result<Client, Box<dyn Error>> {
        // TCP to the server (captured with `--pcap`), then the WebSocket
        // handshake over it.
        let host = url.strip_prefix("ws://").and_then(|r| r.split('/').next());
        let tcp = pcap::tcp_connect(host.ok_or("a ws:// URL")?).await?;
        let (ws, _response) = tokio_tungstenite::client_async(url, tcp).await?;
        Ok(Client { name, ws })
    }

    async fn send(&mut self, out: &mut dyn Write, text: String) -> Result<(), Box<dyn Error>> {
        writeln!(out, "{:>5} → {text}", self.name)?;
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Waits (at most 5 s) for the next text frame.
    async fn recv(&mut self, out: &mut dyn Write) -> Result<serde_json::Value, Box<dyn Error>> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .map_err(|_| format!("{}: nothing within 5 s", self.name))?
                .ok_or("the server closed the connection")??;
            if let Message::Text(text) = frame {
                writeln!(out, "{:>5} ← {text}", self.name)?;
                return Ok(serde_json::from_str(text.as_str())?);
            }
        }
    }
}
// ANCHOR_END: client

async fn scene(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    // ANCHOR: server
    let server = Server::bind("127.0.0.1:0".parse()?, Config::default()).await?;
    let addr = server.local_addr()?;
    let handle = server.handle(); // to add Rust members and to stop it
    let serving = tokio::spawn(server.run());
    // ANCHOR_END: server
    writeln!(out, "== the server ==")?;
    writeln!(
        out,
        "listening on http://{addr}/ (WebSocket at ws://{addr}/ws)"
    )?;
    writeln!(out)?;
    let url = format!("ws://{addr}/ws");

    writeln!(out, "== alice creates the room ==")?;
    // ANCHOR: create_or_join
    let mut alice = Client::connect("alice", &url).await?;
    let join = ClientMessage::CreateOrJoin {
        room: "codelab".into(),
    };
    alice.send(out, join.to_json()).await?;
    let created = alice.recv(out).await?; // {"type":"created",…,"id":1}
    // ANCHOR_END: create_or_join
    let alice_id = created["id"].clone();
    writeln!(out)?;

    writeln!(out, "== bob joins: both hear ready ==")?;
    let mut bob = Client::connect("bob", &url).await?;
    bob.send(out, join.to_json()).await?;
    bob.recv(out).await?; // joined
    alice.recv(out).await?; // join
    alice.recv(out).await?; // ready
    bob.recv(out).await?; // ready
    writeln!(out)?;

    writeln!(out, "== an offer and an answer, relayed as they are ==")?;
    // ANCHOR: relay
    let offer =
        json!({"type": "offer", "sdp": "v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"});
    alice
        .send(
            out,
            ClientMessage::Message {
                to: None,
                data: offer.clone().into(),
            }
            .to_json(),
        )
        .await?;
    let relayed = bob.recv(out).await?; // {"type":"message","from":1,"data":{…}}
    assert_eq!(relayed["data"], offer, "the server changed the data");
    // ANCHOR_END: relay
    let answer =
        json!({"type": "answer", "sdp": "v=0\r\no=- 7310 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"});
    bob.send(
        out,
        ClientMessage::Message {
            to: None,
            data: answer.into(),
        }
        .to_json(),
    )
    .await?;
    alice.recv(out).await?;
    writeln!(out)?;

    writeln!(
        out,
        "== a third member, inside the server's process: full =="
    )?;
    // ANCHOR: member
    let mut carol = handle.member().ok_or("the server is stopping")?;
    carol.send(join.clone());
    let answer = carol.recv().await.ok_or("no answer")?; // ServerMessage::Full
    // ANCHOR_END: member
    writeln!(out, "carol (a Rust member) ← {answer:?}")?;
    drop(carol);
    writeln!(out)?;

    writeln!(out, "== malformed JSON: an error to alice only ==")?;
    alice
        .send(out, r#"{"type":"message","data":"#.to_string())
        .await?;
    alice.recv(out).await?;
    writeln!(out)?;

    writeln!(out, "== bob leaves ==")?;
    bob.ws.close(None).await?;
    writeln!(out, "  bob closes his WebSocket")?;
    let bye = alice.recv(out).await?;
    writeln!(
        out,
        "member {} left; alice (member {alice_id}) is alone in the room",
        bye["id"]
    )?;

    handle.shutdown();
    serving.await??;
    writeln!(out, "server stopped")?;
    Ok(())
}
