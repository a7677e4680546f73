//! `dfl studio`: starts the web app over the workspace and prints its URL.

use std::io::Write;
use std::net::IpAddr;

use anyhow::Context;

use crate::report::Outcome;
use crate::studio::{self, StudioOptions};
use crate::workspace::Workspace;

use super::GlobalArgs;

/// Arguments of `dfl studio`.
#[derive(Debug, clap::Args)]
pub struct StudioArgs {
    /// The port to listen on (0: any free port; the printed URL has the one taken).
    #[arg(long, default_value_t = 7860)]
    pub port: u16,
    /// The address to listen on. Anything but loopback lets other machines reach the page
    /// (the session token still guards it); prefer an SSH tunnel (README).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
}

/// Runs `dfl studio` until Ctrl-C.
pub fn run(args: &StudioArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let ws = Workspace::new(&global.workspace);
    if !ws.exists() {
        anyhow::bail!(
            "{}: no such workspace folder; pass -w WORKSPACE or create it first",
            ws.root().display()
        );
    }
    if !args.host.is_loopback() {
        log::warn!(
            "listening on {}: other machines can reach the studio; anyone with the URL's token can use it",
            args.host
        );
    }
    let opts =
        StudioOptions { host: args.host, port: args.port, token: None, device: global.device };
    let running = studio::start(ws, &opts).context("starting the studio")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "dfl studio: open {}", running.url()).context("printing the URL")?;
    out.flush().context("printing the URL")?;
    drop(out);
    log::info!(
        "Ctrl-C stops the studio; the URL carries this session's token: keep it to yourself"
    );
    running.serve_until_signal().context("serving the studio")?;
    Ok(Outcome::Done)
}
