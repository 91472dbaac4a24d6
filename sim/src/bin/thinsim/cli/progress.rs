//! Progress on standard error, the one setup every subcommand uses: a bar (known length) or
//! a spinner, hidden when standard error is not a terminal (CI logs stay clean), and
//! [`Metered`], which counts the bytes through a reader or writer into a bar.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `len` steps drawn with `template`, or a ticking spinner without a length;
/// hidden unless standard error is a terminal.
pub fn bar(len: Option<u64>, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, fallback) = match len {
        Some(n) => (ProgressBar::new(n), ProgressStyle::default_bar()),
        None => {
            let b = ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            (b, ProgressStyle::default_spinner())
        }
    };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or(fallback));
    bar
}

/// A reader or writer whose bytes advance a progress bar (a seek moves it, for readers that
/// make a second pass).
pub struct Metered<T> {
    pub inner: T,
    pub bar: ProgressBar,
    /// The bar's message from the first seek on (what the second pass does).
    pub after_seek: Option<&'static str>,
}

impl<T: std::io::Read> std::io::Read for Metered<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl<T: std::io::Seek> std::io::Seek for Metered<T> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        let at = self.inner.seek(pos)?;
        self.bar.set_position(at);
        if let Some(m) = self.after_seek {
            self.bar.set_message(m);
        }
        Ok(at)
    }
}

impl<T: std::io::Write> std::io::Write for Metered<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
