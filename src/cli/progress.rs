//! indicatif progress bars for the library's [`Progress`] trait.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::progress::Progress;

/// A bar on stderr with count, rate and ETA; hidden when stderr is not a terminal.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// Adds a bar labelled `what` (e.g. "frames") to `bars`.
    pub fn new(bars: &MultiProgress, what: &str) -> Self {
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ({per_sec:1}, eta {eta})",
        )
        .expect("invariant: the template is valid");
        let bar = bars.add(ProgressBar::new(0).with_style(style).with_prefix(what.to_owned()));
        bar.enable_steady_tick(Duration::from_millis(250));
        Self { bar }
    }
}

impl Progress for Bar {
    fn set_len(&self, len: u64) {
        if len == 0 {
            // Open-ended work (training with no target): a count and a rate, no bar or ETA.
            let style = ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {pos} {msg} ({per_sec:1})",
            )
            .expect("invariant: the template is valid");
            self.bar.set_style(style);
        }
        self.bar.set_length(len);
    }

    fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    fn note(&self, tally: &str) {
        self.bar.set_message(tally.to_owned());
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
