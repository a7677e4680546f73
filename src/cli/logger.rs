//! A small stderr logger behind the `log` facade (as in ripgrep), aware of progress bars: while
//! a bar is drawn, lines are printed above it instead of through it.

use indicatif::MultiProgress;
use log::{Level, LevelFilter, Log, Metadata, Record};

/// Logs `dfl: warning: …` lines to stderr above any progress bars.
#[derive(Debug)]
struct Logger {
    bars: MultiProgress,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with("dfl")
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match record.level() {
            Level::Error => format!("dfl: error: {}", record.args()),
            Level::Warn => format!("dfl: warning: {}", record.args()),
            Level::Info => format!("dfl: {}", record.args()),
            Level::Debug | Level::Trace => {
                format!("dfl: {}: {}", record.module_path().unwrap_or("dfl"), record.args())
            }
        };
        let line = one_line(&line);
        self.bars.suspend(|| eprintln!("{line}"));
    }

    fn flush(&self) {}
}

/// Returns the level for `-v` and `-q` counts: info by default, each `-v` one more verbose,
/// each `-q` one quieter.
pub fn level(verbose: u8, quiet: u8) -> LevelFilter {
    const LEVELS: [LevelFilter; 6] = [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ];
    let info = 3i32;
    let index = (info + i32::from(verbose) - i32::from(quiet)).clamp(0, 5);
    LEVELS[usize::try_from(index).expect("invariant: clamped to 0..=5")]
}

/// Installs the logger once, for the whole process.
pub fn init(bars: MultiProgress, level: LevelFilter) {
    if log::set_boxed_logger(Box::new(Logger { bars })).is_ok() {
        log::set_max_level(level);
    }
}

/// Folds a message onto one line: OpenCV and libtorch end theirs with a newline or spread them
/// over several, and every dfl message is one line.
pub fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_moves_from_info() {
        assert_eq!(level(0, 0), LevelFilter::Info);
        assert_eq!(level(1, 0), LevelFilter::Debug);
        assert_eq!(level(5, 0), LevelFilter::Trace);
        assert_eq!(level(0, 1), LevelFilter::Warn);
        assert_eq!(level(0, 9), LevelFilter::Off);
    }
}
