//! Data-parallel `dfl train`: the flags, the worker's rendezvous from torchrun's environment
//! variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`,
//! `GLOO_SOCKET_IFNAME`), and the launcher that starts `--nproc` workers on this machine and
//! supervises them.

use std::ffi::OsString;
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::distributed::{DEFAULT_TIMEOUT, Rendezvous, free_local_port};
use crate::report::Outcome;

/// torchrun's default store port, for runs over several machines.
const DEFAULT_PORT: u16 = 29500;

/// Flags of `dfl train` for training over several processes (GPUs, machines).
#[derive(Debug, Clone, clap::Args)]
pub struct DistArgs {
    /// Start N training processes on this machine and supervise them: one per GPU with CUDA
    /// (each on cuda:LOCAL_RANK), or CPU processes that share the cores. The batch size is per
    /// process.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub nproc: Option<u16>,
    /// Machines in the run (each starts --nproc processes with its own --node-rank) [1].
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub nnodes: u16,
    /// This machine's index among --nnodes (0 holds rank 0, which writes the model) [0].
    #[arg(long, value_name = "I", default_value_t = 0)]
    pub node_rank: u16,
    /// The address of node 0, where rank 0 serves the rendezvous (required with --nnodes > 1).
    #[arg(long, value_name = "ADDR")]
    pub master_addr: Option<String>,
    /// The rendezvous port on node 0 [a free port on one machine, 29500 over several].
    #[arg(long, value_name = "PORT")]
    pub master_port: Option<u16>,
    /// Seconds a rank waits for the others (at the start, and in each step while rank 0
    /// saves, previews or evaluates) before it gives up [300].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub dist_timeout: Option<u64>,
}

impl DistArgs {
    /// Whether this invocation launches workers rather than training itself.
    pub fn launches(&self) -> bool {
        self.nproc.is_some_and(|n| n > 1) || self.nnodes > 1
    }

    fn timeout(&self) -> Duration {
        self.dist_timeout.map_or(DEFAULT_TIMEOUT, Duration::from_secs)
    }
}

/// This process's place in a data-parallel run, from torchrun's variables; `None` when
/// `RANK` is not set (a plain run).
///
/// # Errors
/// A variable that is not a number, or a rank outside the world.
pub fn worker_rendezvous(args: &DistArgs) -> anyhow::Result<Option<(Rendezvous, usize)>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let Some(rank) = var("RANK") else { return Ok(None) };
    let number = |name: &str, value: String| -> anyhow::Result<usize> {
        value.trim().parse().with_context(|| format!("{name}={value:?} is not a whole number"))
    };
    let rank = number("RANK", rank)?;
    let world = number(
        "WORLD_SIZE",
        var("WORLD_SIZE").context("RANK is set but WORLD_SIZE is not; set both (or neither)")?,
    )?;
    if rank >= world {
        bail!("RANK={rank} is outside WORLD_SIZE={world}; ranks go from 0 to WORLD_SIZE - 1");
    }
    let local_rank = var("LOCAL_RANK").map(|v| number("LOCAL_RANK", v)).transpose()?;
    let port = match var("MASTER_PORT") {
        Some(p) => p.trim().parse().with_context(|| format!("MASTER_PORT={p:?} is not a port"))?,
        None => DEFAULT_PORT,
    };
    let rendezvous = Rendezvous {
        master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".to_owned()),
        master_port: port,
        rank,
        world,
        timeout: args.timeout(),
        interface: var("GLOO_SOCKET_IFNAME"),
    };
    Ok(Some((rendezvous, local_rank.unwrap_or(rank))))
}

/// The flags the launcher handles itself, which its workers must not see again.
const LAUNCHER_FLAGS: [&str; 5] =
    ["--nproc", "--nnodes", "--node-rank", "--master-addr", "--master-port"];

/// `args` without the launcher's flags (as `--flag value` or `--flag=value`).
fn worker_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let text = arg.to_string_lossy();
        if LAUNCHER_FLAGS.contains(&text.as_ref()) {
            skip_value = true;
            continue;
        }
        if LAUNCHER_FLAGS.iter().any(|f| text.starts_with(&format!("{f}="))) {
            continue;
        }
        out.push(arg);
    }
    out
}

/// Starts this machine's workers (`dfl` itself, with the same arguments and torchrun's
/// variables), forwards Ctrl-C and SIGTERM to them, and waits. When one fails, the others
/// find out within the timeout (and say which rank is gone); any still running after that
/// are killed.
///
/// # Errors
/// Bad flags, or a worker that cannot be started.
pub fn supervise(args: &DistArgs, cuda: bool) -> anyhow::Result<Outcome> {
    let per_node = usize::from(args.nproc.unwrap_or(1));
    let nnodes = usize::from(args.nnodes);
    if usize::from(args.node_rank) >= nnodes {
        bail!(
            "--node-rank {} is outside --nnodes {nnodes}; use 0 to {}",
            args.node_rank,
            nnodes - 1
        );
    }
    let master_addr = match (&args.master_addr, nnodes) {
        (Some(addr), _) => addr.clone(),
        (None, 1) => "127.0.0.1".to_owned(),
        (None, _) => bail!("--nnodes {nnodes} needs --master-addr: the address of node 0"),
    };
    let port = match (args.master_port, nnodes) {
        (Some(p), _) => p,
        (None, 1) => free_local_port().context("finding a free port for the rendezvous")?,
        (None, _) => DEFAULT_PORT,
    };
    let world = per_node * nnodes;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = (cores / per_node).max(1);
    let exe = std::env::current_exe().context("finding the dfl executable to start workers")?;
    let argv = worker_args(std::env::args_os().skip(1));
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the Ctrl-C handler")?;
    }
    log::info!(
        "starting {per_node} worker(s) of {world} (ranks {}..{}), rendezvous at {master_addr}:{port}{}",
        usize::from(args.node_rank) * per_node,
        (usize::from(args.node_rank) + 1) * per_node - 1,
        if cuda { String::new() } else { format!(", {threads} thread(s) each") }
    );
    let mut children: Vec<(usize, Child)> = Vec::new();
    for local in 0..per_node {
        let rank = usize::from(args.node_rank) * per_node + local;
        let mut command = Command::new(&exe);
        command
            .args(&argv)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", local.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("MASTER_ADDR", &master_addr)
            .env("MASTER_PORT", port.to_string());
        if rank > 0 {
            // Rank 0 reports the run; the others only their warnings and errors.
            command.arg("-q");
        }
        if !cuda {
            command.env("OMP_NUM_THREADS", threads.to_string());
            command.env("RAYON_NUM_THREADS", threads.to_string());
        }
        match command.spawn() {
            Ok(child) => children.push((rank, child)),
            Err(e) => {
                terminate(&mut children);
                return Err(e).with_context(|| format!("starting rank {rank} ({})", exe.display()));
            }
        }
    }
    Ok(wait_all(children, &stop, args.timeout()))
}

/// Waits for every worker; forwards a stop request once; after the first failure gives the
/// others the timeout (plus a grace period) to notice, then kills them.
fn wait_all(mut running: Vec<(usize, Child)>, stop: &AtomicBool, timeout: Duration) -> Outcome {
    let mut forwarded = false;
    let mut first_failure: Option<(usize, ExitStatus, Instant)> = None;
    while !running.is_empty() {
        if stop.load(Ordering::Relaxed) && !forwarded {
            forwarded = true;
            for (_, child) in &running {
                terminate_gently(child);
            }
        }
        let mut still = Vec::new();
        for (rank, mut child) in running {
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() && first_failure.is_none() {
                        log::error!("rank {rank} ended: {}", describe(status));
                        first_failure = Some((rank, status, Instant::now()));
                    }
                }
                Ok(None) => still.push((rank, child)),
                Err(e) => log::warn!("cannot wait for rank {rank}: {e}"),
            }
        }
        running = still;
        if let Some((_, _, at)) = first_failure
            && at.elapsed() > timeout + Duration::from_secs(30)
        {
            terminate(&mut running);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match first_failure {
        None => Outcome::Done,
        Some((_, status, _)) if status.code() == Some(1) => Outcome::DoneWithSkips,
        Some(_) => Outcome::Fatal,
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Sends SIGTERM: the worker saves (rank 0) and stops after the step under way, with the
/// others.
fn terminate_gently(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else { return };
    // SAFETY: kill(2) on the pid of a child we have not reaped yet (so it is not reused).
    unsafe { libc::kill(pid, libc::SIGTERM) };
}

fn terminate(children: &mut Vec<(usize, Child)>) {
    for (rank, child) in children.iter_mut() {
        log::warn!("stopping rank {rank}");
        let _ = child.kill();
        let _ = child.wait();
    }
    children.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_flags_are_taken_out_of_the_workers_arguments() {
        let args =
            ["train", "--name", "m", "--nproc", "2", "--master-port=1234", "--batch-size", "4"];
        let out = worker_args(args.map(OsString::from));
        assert_eq!(out, ["train", "--name", "m", "--batch-size", "4"].map(OsString::from));
    }
}
