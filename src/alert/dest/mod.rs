//! Where alert records go, several at once. One file per destination; each says when what
//! it was given is safely delivered (`flush`), which is what lets the pipeline commit source
//! offsets behind the alerts.

pub mod alertmanager;
pub mod console;
pub mod file;
pub mod kafka;

use super::Alert;

pub trait AlertDestination: Send {
    /// One record; `line` is its JSON (no newline), the same bytes for every destination.
    fn send(&mut self, alert: &Alert, line: &[u8]) -> anyhow::Result<()>;
    /// Everything sent so far is delivered (or, for Alertmanager, handed to its retrying sender).
    fn flush(&mut self) -> anyhow::Result<()>;
    /// The run ends: a last attempt at what is still undelivered; what is lost is said.
    fn finish(&mut self) -> anyhow::Result<()> {
        self.flush()
    }
    fn describe(&self) -> String;
}
