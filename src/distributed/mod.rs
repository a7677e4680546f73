//! Data-parallel process groups on PyTorch's distributed runtime (c10d), through the C++ shim
//! (`csrc/distributed.cpp`; NCCL in `csrc/cuda_runtime.cpp`).
//!
//! A run of `world` ranks meets at a rendezvous: rank 0 serves a key-value store (c10d's
//! TCPStore) at the master address and port, the others connect to it, and the backend (Gloo
//! for CPU tensors, NCCL for CUDA tensors) uses the store to find its peers. After that, every
//! collective ([`Group::all_reduce`], [`Group::broadcast`], [`Group::barrier`]) must be called by
//! every rank in the same order, and waits at most the group's timeout.
//!
//! A collective that fails (a peer died, its machine went away, or it hung past the timeout)
//! poisons the group and is turned into an error that names the rank that is gone: the
//! survivors hold a roll call through the store ([`Group::all_reduce`]'s error says who did not
//! answer, or what a rank reported with [`Group::publish_error`] before it stopped). A poisoned
//! group is never shut down cleanly (that would wait on the dead peer); the process exits.

use std::ffi::{CString, c_char, c_int, c_longlong, c_void};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tch::{Device, Tensor};

use crate::device::cuda_runtime;

/// The store key under which rank `r` answers a roll call.
fn alive_key(rank: usize) -> String {
    format!("dfl/alive/{rank}")
}

/// The store key under which rank `r` leaves the error it stopped with.
fn error_key(rank: usize) -> String {
    format!("dfl/error/{rank}")
}

/// How long survivors wait for each other's answer in a roll call.
const ROLL_CALL: Duration = Duration::from_secs(5);

/// Room for the shim's error messages.
const ERROR_BYTES: usize = 1024;

/// The default time a collective may wait for the slowest rank (rank 0 saves, previews and
/// evaluates while the others wait), and the rendezvous for every rank to arrive.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

unsafe extern "C" {
    fn dfl_group_rendezvous(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_longlong,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    fn dfl_group_use_gloo(
        group: *mut c_void,
        interface: *const c_char,
        hostname: *const c_char,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn dfl_group_all_reduce(
        group: *mut c_void,
        tensor: *const c_void,
        op: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn dfl_group_broadcast(
        group: *mut c_void,
        tensor: *const c_void,
        root: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn dfl_group_barrier(group: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    fn dfl_group_store_set(
        group: *mut c_void,
        key: *const c_char,
        data: *const u8,
        len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn dfl_group_store_get(
        group: *mut c_void,
        key: *const c_char,
        timeout_ms: c_longlong,
        sink: unsafe extern "C" fn(*mut c_void, *const u8, usize),
        ctx: *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn dfl_group_store_has(group: *mut c_void, key: *const c_char) -> c_int;
    fn dfl_group_free(group: *mut c_void);
}

/// Where and how the ranks of a run meet (torchrun's `MASTER_ADDR`, `MASTER_PORT`,
/// `WORLD_SIZE`, `RANK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// The address of rank 0's machine (it serves the store there).
    pub master_addr: String,
    /// The store's TCP port on rank 0's machine.
    pub master_port: u16,
    /// This process's rank, `0..world`.
    pub rank: usize,
    /// The number of ranks.
    pub world: usize,
    /// How long the rendezvous and each collective may wait.
    pub timeout: Duration,
    /// The network interface Gloo listens on (`GLOO_SOCKET_IFNAME`), if set; otherwise the
    /// address this machine reaches the master from.
    pub interface: Option<String>,
}

/// How values from the ranks are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise maximum.
    Max,
    /// Element-wise minimum.
    Min,
}

impl ReduceOp {
    fn code(self) -> c_int {
        match self {
            Self::Sum => 0,
            Self::Max => 1,
            Self::Min => 2,
        }
    }
}

/// Errors of a process group, each one line with the next step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The rendezvous values make no sense.
    #[error("rank {rank} of a world of {world} does not exist; ranks are 0 to world size - 1")]
    BadRank {
        /// The rank asked for.
        rank: usize,
        /// The world size.
        world: usize,
    },
    /// The ranks did not all meet.
    #[error(
        "rank {rank} of {world} could not meet the other ranks at {addr}:{port} within {secs} s ({reason}); start every rank with the same master address, port and world size, and check that rank 0's machine accepts connections on that port"
    )]
    Rendezvous {
        /// This rank.
        rank: usize,
        /// The world size.
        world: usize,
        /// The master address.
        addr: String,
        /// The master port.
        port: u16,
        /// The timeout, in seconds.
        secs: u64,
        /// libtorch's reason.
        reason: String,
    },
    /// The backend could not be set up.
    #[error("cannot set up the {backend} backend on rank {rank}: {reason}")]
    Backend {
        /// "Gloo" or "NCCL".
        backend: &'static str,
        /// This rank.
        rank: usize,
        /// Why.
        reason: String,
    },
    /// Another rank stopped with an error of its own.
    #[error("rank {rank} stopped: {message}")]
    PeerFailed {
        /// The rank that stopped.
        rank: usize,
        /// The error it reported.
        message: String,
    },
    /// Other ranks stopped answering.
    #[error(
        "{} stopped answering during the {what} (its process ended, or its machine is unreachable); rerun the same command to resume from the last saved iteration",
        describe_ranks(.ranks)
    )]
    PeerLost {
        /// The ranks that did not answer the roll call.
        ranks: Vec<usize>,
        /// The collective that failed.
        what: &'static str,
    },
    /// Rank 0 (which serves the store) is gone.
    #[error(
        "rank 0 (the master, at {addr}:{port}) is gone: the {what} failed and its store does not answer; rerun the same command to resume from the last saved iteration"
    )]
    MasterLost {
        /// The master address.
        addr: String,
        /// The master port.
        port: u16,
        /// The collective that failed.
        what: &'static str,
    },
    /// A collective failed while every rank still answers.
    #[error("the {what} failed on rank {rank}: {reason}")]
    Collective {
        /// The collective.
        what: &'static str,
        /// This rank.
        rank: usize,
        /// libtorch's reason.
        reason: String,
    },
    /// A key did not arrive in the store in time.
    #[error("rank {rank} waited in vain for {key:?} from rank 0 ({reason})")]
    Store {
        /// This rank.
        rank: usize,
        /// The key.
        key: String,
        /// libtorch's reason.
        reason: String,
    },
}

fn describe_ranks(ranks: &[usize]) -> String {
    match ranks {
        [one] => format!("rank {one}"),
        many => {
            let list: Vec<String> = many.iter().map(usize::to_string).collect();
            format!("ranks {}", list.join(", "))
        }
    }
}

/// A process group: this rank's handle on the store and the backend.
pub struct Group {
    raw: *mut c_void,
    rendezvous: Rendezvous,
    backend: &'static str,
    /// Set when a collective failed: the backend may still wait on a dead peer.
    poisoned: AtomicBool,
    /// Serialises calls into the shim: collectives must run in the same order on every rank.
    calls: Mutex<()>,
}

// SAFETY: the shim's group is used through `calls`, one call at a time; c10d's store and
// backends may be used from any thread.
unsafe impl Send for Group {}
// SAFETY: as above; every method takes the mutex before touching `raw`.
unsafe impl Sync for Group {}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("rank", &self.rendezvous.rank)
            .field("world", &self.rendezvous.world)
            .field("backend", &self.backend)
            .finish()
    }
}

/// An error buffer for one shim call.
struct ErrorBuf([u8; ERROR_BYTES]);

impl ErrorBuf {
    fn new() -> Self {
        Self([0; ERROR_BYTES])
    }

    fn ptr(&mut self) -> *mut c_char {
        self.0.as_mut_ptr().cast()
    }

    fn message(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        let text = String::from_utf8_lossy(&self.0[..end]);
        // libtorch's messages can span lines; errors here are one line.
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

impl Group {
    /// Meets the other ranks and sets up the backend for `device`: Gloo on the CPU, NCCL on
    /// CUDA. Blocks until every rank has arrived (or the timeout passes).
    ///
    /// # Errors
    /// `BadRank`, `Rendezvous` (not everyone arrived in time), or `Backend`.
    pub fn join(rendezvous: Rendezvous, device: Device) -> Result<Self, GroupError> {
        let Rendezvous { rank, world, .. } = rendezvous;
        if world == 0 || rank >= world {
            return Err(GroupError::BadRank { rank, world });
        }
        let host = c_string(&rendezvous.master_addr);
        let timeout_ms = c_longlong::try_from(rendezvous.timeout.as_millis()).unwrap_or(i64::MAX);
        let mut err = ErrorBuf::new();
        let to_int = |v: usize| c_int::try_from(v).unwrap_or(c_int::MAX);
        // SAFETY: the strings and the buffer outlive the call; the shim catches every C++
        // exception and returns null with a message on failure.
        let raw = unsafe {
            dfl_group_rendezvous(
                host.as_ptr(),
                c_int::from(rendezvous.master_port),
                to_int(rank),
                to_int(world),
                timeout_ms,
                err.ptr(),
                ERROR_BYTES,
            )
        };
        if raw.is_null() {
            return Err(GroupError::Rendezvous {
                rank,
                world,
                addr: rendezvous.master_addr.clone(),
                port: rendezvous.master_port,
                secs: rendezvous.timeout.as_secs(),
                reason: err.message(),
            });
        }
        let mut group = Self {
            raw,
            rendezvous,
            backend: "Gloo",
            poisoned: AtomicBool::new(false),
            calls: Mutex::new(()),
        };
        match device {
            Device::Cuda(index) => group.use_nccl(index)?,
            _ => group.use_gloo()?,
        }
        Ok(group)
    }

    fn use_gloo(&mut self) -> Result<(), GroupError> {
        let interface = self.rendezvous.interface.as_deref().map(c_string);
        let hostname = c_string(&local_address_towards(&self.rendezvous.master_addr));
        let mut err = ErrorBuf::new();
        // SAFETY: `raw` is a live group; the strings and buffer outlive the call.
        let failed = unsafe {
            dfl_group_use_gloo(
                self.raw,
                interface.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                hostname.as_ptr(),
                err.ptr(),
                ERROR_BYTES,
            )
        } != 0;
        if failed {
            let reason = err.message();
            return Err(GroupError::Backend { backend: "Gloo", rank: self.rank(), reason });
        }
        Ok(())
    }

    fn use_nccl(&mut self, device: usize) -> Result<(), GroupError> {
        self.backend = "NCCL";
        let rank = self.rank();
        let runtime = cuda_runtime().map_err(|reason| GroupError::Backend {
            backend: "NCCL",
            rank,
            reason: reason.to_owned(),
        })?;
        // SAFETY: `raw` is a live group from `dfl_group_rendezvous`.
        unsafe { runtime.group_use_nccl(self.raw, device) }.map_err(|reason| GroupError::Backend {
            backend: "NCCL",
            rank,
            reason,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rendezvous.rank
    }

    /// The number of ranks.
    pub fn world(&self) -> usize {
        self.rendezvous.world
    }

    /// Whether this is rank 0, the one that writes the model folder.
    pub fn is_leader(&self) -> bool {
        self.rendezvous.rank == 0
    }

    /// "Gloo" or "NCCL".
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Whether a collective failed: the run cannot go on (another rank is gone or hung).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Combines `tensor` over all ranks, in place; every rank ends with bit-identical values.
    ///
    /// # Errors
    /// `PeerFailed`, `PeerLost` or `MasterLost` when a rank is gone (the group is then
    /// unusable), `Collective` otherwise.
    pub fn all_reduce(
        &self,
        tensor: &Tensor,
        op: ReduceOp,
        what: &'static str,
    ) -> Result<(), GroupError> {
        self.collective(what, |raw, err| {
            // SAFETY: tch's handle is an `at::Tensor*` the shim only reads (it reduces into the
            // tensor's storage); `raw` is live.
            unsafe {
                dfl_group_all_reduce(raw, tensor.as_ptr().cast(), op.code(), err, ERROR_BYTES)
            }
        })
    }

    /// Overwrites `tensor` with rank `root`'s, on every rank.
    ///
    /// # Errors
    /// As [`Group::all_reduce`].
    pub fn broadcast(
        &self,
        tensor: &Tensor,
        root: usize,
        what: &'static str,
    ) -> Result<(), GroupError> {
        let root = c_int::try_from(root).unwrap_or(c_int::MAX);
        self.collective(what, |raw, err| {
            // SAFETY: as in `all_reduce`.
            unsafe { dfl_group_broadcast(raw, tensor.as_ptr().cast(), root, err, ERROR_BYTES) }
        })
    }

    /// Returns once every rank has reached it.
    ///
    /// # Errors
    /// As [`Group::all_reduce`].
    pub fn barrier(&self, what: &'static str) -> Result<(), GroupError> {
        self.collective(what, |raw, err| {
            // SAFETY: `raw` is live and the buffer outlives the call.
            unsafe { dfl_group_barrier(raw, err, ERROR_BYTES) }
        })
    }

    fn collective(
        &self,
        what: &'static str,
        call: impl FnOnce(*mut c_void, *mut c_char) -> c_int,
    ) -> Result<(), GroupError> {
        let mut err = ErrorBuf::new();
        let failed = {
            let _one = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            call(self.raw, err.ptr()) != 0
        };
        if !failed {
            return Ok(());
        }
        self.poisoned.store(true, Ordering::SeqCst);
        Err(self.diagnose(what, err.message()))
    }

    /// Puts `value` under `key` in the store (rank 0 shares the run's settings this way).
    ///
    /// # Errors
    /// `MasterLost` when the store does not answer.
    pub fn store_set(&self, key: &str, value: &[u8]) -> Result<(), GroupError> {
        let key_c = c_string(key);
        let mut err = ErrorBuf::new();
        let _one = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `raw` is live; the key, value and buffer outlive the call.
        let failed = unsafe {
            dfl_group_store_set(
                self.raw,
                key_c.as_ptr(),
                value.as_ptr(),
                value.len(),
                err.ptr(),
                ERROR_BYTES,
            )
        } != 0;
        if failed { Err(self.master_lost("store write")) } else { Ok(()) }
    }

    /// Waits (up to the group's timeout) for `key` in the store and returns its value.
    ///
    /// # Errors
    /// `Store` when it does not come in time or the store is gone.
    pub fn store_get(&self, key: &str) -> Result<Vec<u8>, GroupError> {
        let _one = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        self.read_key(key, self.rendezvous.timeout).map_err(|reason| GroupError::Store {
            rank: self.rank(),
            key: key.to_owned(),
            reason,
        })
    }

    /// Waits up to `timeout` for `key` and returns its value, or libtorch's reason. The caller
    /// holds the call lock.
    fn read_key(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, String> {
        let key = c_string(key);
        let timeout_ms = c_longlong::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let mut value: Vec<u8> = Vec::new();
        let mut err = ErrorBuf::new();
        // SAFETY: `raw` is live; `append_bytes` only appends to `value`, which outlives the call.
        let failed = unsafe {
            dfl_group_store_get(
                self.raw,
                key.as_ptr(),
                timeout_ms,
                append_bytes,
                (&raw mut value).cast(),
                err.ptr(),
                ERROR_BYTES,
            )
        } != 0;
        if failed { Err(err.message()) } else { Ok(value) }
    }

    /// Leaves this rank's fatal error in the store, so that the other ranks can say why it
    /// stopped. Best effort: nothing happens when the store is gone.
    pub fn publish_error(&self, message: &str) {
        let _ = self.store_set(&error_key(self.rank()), message.as_bytes());
    }

    fn has(&self, key: &str) -> Option<bool> {
        let key = c_string(key);
        // SAFETY: `raw` is live and the key outlives the call.
        match unsafe { dfl_group_store_has(self.raw, key.as_ptr()) } {
            1 => Some(true),
            0 => Some(false),
            _ => None,
        }
    }

    fn master_lost(&self, what: &'static str) -> GroupError {
        GroupError::MasterLost {
            addr: self.rendezvous.master_addr.clone(),
            port: self.rendezvous.master_port,
            what,
        }
    }

    /// After a failed collective: a roll call through the store. Every survivor answers; the
    /// ranks that left an error are reported with it, the ones that do not answer within
    /// [`ROLL_CALL`] as lost.
    fn diagnose(&self, what: &'static str, reason: String) -> GroupError {
        let _one = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let me = self.rank();
        let key = c_string(&alive_key(me));
        let mut err = ErrorBuf::new();
        // SAFETY: `raw` is live; the key and buffer outlive the call.
        let answered = unsafe {
            dfl_group_store_set(self.raw, key.as_ptr(), b"1".as_ptr(), 1, err.ptr(), ERROR_BYTES)
        } == 0;
        if !answered {
            return self.master_lost(what);
        }
        let others: Vec<usize> = (0..self.world()).filter(|&r| r != me).collect();
        let started = Instant::now();
        loop {
            for &rank in &others {
                if self.has(&error_key(rank)) == Some(true) {
                    return self.peer_failed(rank);
                }
            }
            let mut missing = Vec::new();
            for &rank in &others {
                match self.has(&alive_key(rank)) {
                    Some(true) => {}
                    Some(false) => missing.push(rank),
                    None => return self.master_lost(what),
                }
            }
            if missing.is_empty() {
                return GroupError::Collective { what, rank: me, reason };
            }
            if started.elapsed() >= ROLL_CALL.min(self.rendezvous.timeout) {
                return GroupError::PeerLost { ranks: missing, what };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn peer_failed(&self, rank: usize) -> GroupError {
        let message = self.read_key(&error_key(rank), Duration::from_secs(1)).map_or_else(
            |_| "an error it could not report".to_owned(),
            |m| String::from_utf8_lossy(&m).into_owned(),
        );
        GroupError::PeerFailed { rank, message }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.poisoned.load(Ordering::SeqCst) {
            // Shutting the backend down would wait for work stuck on a dead peer; the process
            // is about to exit anyway.
            return;
        }
        // SAFETY: `raw` came from `dfl_group_rendezvous` and is freed once.
        unsafe { dfl_group_free(self.raw) };
    }
}

/// The store's reader callback: appends the value's bytes to the `Vec<u8>` behind `ctx`.
///
/// # Safety
/// `ctx` must point to a live `Vec<u8>`, and `data` to `len` readable bytes.
unsafe extern "C" fn append_bytes(ctx: *mut c_void, data: *const u8, len: usize) {
    // SAFETY: guaranteed by the caller (the shim passes the value it read for this call).
    unsafe {
        let out = &mut *ctx.cast::<Vec<u8>>();
        out.extend_from_slice(std::slice::from_raw_parts(data, len));
    }
}

/// The address of this machine that reaches `master`: loopback for a local master, else the
/// source address the routing table picks (no packet is sent).
fn local_address_towards(master: &str) -> String {
    let resolved = (master, 0).to_socket_addrs().ok().and_then(|mut a| a.next());
    let Some(target) = resolved else { return Ipv4Addr::LOCALHOST.to_string() };
    if target.ip().is_loopback() {
        return target.ip().to_string();
    }
    let bind: IpAddr = if target.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    UdpSocket::bind((bind, 0))
        .and_then(|socket| {
            socket.connect((target.ip(), 9))?;
            socket.local_addr()
        })
        .map_or_else(|_| Ipv4Addr::LOCALHOST.to_string(), |a| a.ip().to_string())
}

/// A free TCP port on loopback, for a local run's store. Another process may take it before
/// rank 0 binds it; the rendezvous then fails with a clear error and a rerun picks another.
///
/// # Errors
/// When no port can be bound.
pub fn free_local_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests;
