//! Running tshark in the x-ray tests: its output, the preference that
//! makes it read DTLS application data as SCTP, hex fields.
#![allow(dead_code)]

use std::process::Command;

/// `tshark -r FILE` with `args`, its stdout (the test fails on an error).
pub fn tshark(tshark: &std::path::Path, file: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(tshark)
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("run tshark");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The `-o` preference that makes tshark dissect the DTLS application data
/// on `port` as SCTP (see the module doc), with a throwaway RSA key in `dir`.
pub fn sctp_over_dtls(openssl: &std::path::Path, dir: &std::path::Path, port: u16) -> String {
    let key = dir.join("unused-rsa.key");
    let ok = Command::new(openssl)
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("run openssl")
        .status
        .success();
    assert!(ok, "openssl genrsa failed");
    format!("dtls.keys_list:0.0.0.0,{port},sctp,{}", key.display())
}

/// The DCEP messages in `file`, its SCTP read over DTLS with the `-o`
/// preference `sctp` ([`sctp_over_dtls`]): one `TYPE\tLABEL` a line.
pub fn dcep(bin: &std::path::Path, file: &std::path::Path, sctp: &str) -> String {
    let fields = ["-e", "rtcdc.message_type", "-e", "rtcdc.label"];
    let args = [&["-o", sctp, "-Y", "rtcdc", "-T", "fields"][..], &fields].concat();
    tshark(bin, file, &args)
}

/// The payloads of every text message (PPID 51) in `file`, decrypted as in
/// [`dcep`] (they show as data with upper-layer dissection off).
pub fn texts(bin: &std::path::Path, file: &std::path::Path, sctp: &str) -> Vec<Vec<u8>> {
    let args = [
        "-o",
        sctp,
        "-o",
        "sctp.ulp_dissection:FALSE",
        "-Y",
        "sctp.data_payload_proto_id == 51",
        "-T",
        "fields",
        "-e",
        "data.data",
    ];
    tshark(bin, file, &args).lines().map(hex).collect()
}

/// A hex field (`0a1b…`) as bytes.
pub fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}
