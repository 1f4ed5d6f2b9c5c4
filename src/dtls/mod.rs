//! DTLS 1.2 (doc written at the end of this file's first commit series).

pub mod cert;
mod codec;
mod error;
pub mod handshake;
pub mod prf;
pub mod record;

pub use error::Error;

#[cfg(test)]
pub(crate) mod test_util {
    /// Decodes hex (whitespace ignored); panics on bad input (tests only).
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(s.len() % 2 == 0, "odd hex length");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
            .collect()
    }

    /// Whether an `openssl` binary runs here.
    pub(crate) fn openssl_available() -> bool {
        std::process::Command::new("openssl")
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}
