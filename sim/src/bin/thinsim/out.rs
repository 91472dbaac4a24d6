//! Standard output that ends the process cleanly when it cannot be written, instead of
//! panicking as `println!` does ("failed printing to stdout").
//!
//! - A reader that went away (`thinsim ls IMG | head -1`, a closed FIFO): exit status 1 and
//!   nothing on stderr, as thin-provisioning-tools 1.x do: the reader chose to stop reading.
//! - Any other failure (`> /dev/full`, an I/O error): one line on stderr naming it, status 1.
//!
//! Every subcommand prints through [`outln!`] and [`out!`]; a test runs each tool against a
//! closed pipe and `/dev/full` (`sim/tests/cli_tools.rs`).

use std::io::Write;

/// Writes `args` (and a newline when `newline`) to stdout, or ends the process as the module
/// header says.
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut stdout = std::io::stdout().lock();
    let written =
        stdout
            .write_fmt(args)
            .and_then(|()| if newline { stdout.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = written {
        failed(&e);
    }
}

/// Flushes stdout (what a subcommand printed without a final newline), or ends the process.
pub fn flush() {
    if let Err(e) = std::io::stdout().lock().flush() {
        failed(&e);
    }
}

/// Ends the process after a failed write to stdout.
pub fn failed(e: &std::io::Error) -> ! {
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        eprintln!("thinsim: cannot write to standard output: {e}");
    }
    std::process::exit(1)
}

/// `println!` to stdout through [`write`].
macro_rules! outln {
    () => { $crate::out::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*), true) };
}

/// `print!` to stdout through [`write`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*), false) };
}
