//! Process groups of threads in this process, on Gloo over loopback: the same code paths as
//! separate processes, without spawning any.

use super::*;
use tch::Kind;

fn rendezvous(port: u16, rank: usize, world: usize, timeout: Duration) -> Rendezvous {
    Rendezvous {
        master_addr: "127.0.0.1".to_owned(),
        master_port: port,
        rank,
        world,
        timeout,
        interface: None,
    }
}

/// Runs `body(group)` on `world` threads, one rank each, and returns their results by rank.
fn on_ranks<T: Send>(
    world: usize,
    timeout: Duration,
    body: impl Fn(Group) -> T + Sync,
) -> Vec<Result<T, GroupError>> {
    let port = free_local_port().unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let body = &body;
                s.spawn(move || {
                    Group::join(rendezvous(port, rank, world, timeout), Device::Cpu).map(body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn all_reduce_and_broadcast_give_every_rank_the_same_exact_values() {
    let results = on_ranks(3, Duration::from_secs(30), |group| {
        let r = group.rank() as f32;
        let sum = Tensor::from_slice(&[r, 1.0, -r]);
        group.all_reduce(&sum, ReduceOp::Sum, "test sum").unwrap();
        let max = Tensor::from_slice(&[r, -r]);
        group.all_reduce(&max, ReduceOp::Max, "test max").unwrap();
        let min = Tensor::from_slice(&[r]);
        group.all_reduce(&min, ReduceOp::Min, "test min").unwrap();
        let shared = Tensor::from_slice(&[r * 10.0 + 1.0, 7.0]);
        group.broadcast(&shared, 1, "test broadcast").unwrap();
        group.barrier("test barrier").unwrap();
        let values = |t: &Tensor| Vec::<f32>::try_from(t.to_kind(Kind::Float)).unwrap();
        (values(&sum), values(&max), values(&min), values(&shared))
    });
    for (rank, result) in results.into_iter().enumerate() {
        let (sum, max, min, shared) = result.unwrap();
        assert_eq!(sum, [3.0, 3.0, -3.0], "rank {rank}");
        assert_eq!(max, [2.0, 0.0], "rank {rank}");
        assert_eq!(min, [0.0], "rank {rank}");
        assert_eq!(shared, [11.0, 7.0], "rank {rank} holds rank 1's values");
    }
}

#[test]
fn the_store_carries_bytes_from_rank_zero() {
    let results = on_ranks(2, Duration::from_secs(30), |group| {
        if group.is_leader() {
            group.store_set("dfl/test", b"config \x00 bytes").unwrap();
        }
        group.store_get("dfl/test").unwrap()
    });
    for result in results {
        assert_eq!(result.unwrap(), b"config \x00 bytes");
    }
}

#[test]
fn a_rank_outside_the_world_is_refused() {
    let err = Group::join(rendezvous(1, 2, 2, Duration::from_secs(1)), Device::Cpu).unwrap_err();
    assert_eq!(err, GroupError::BadRank { rank: 2, world: 2 });
}

#[test]
fn a_rendezvous_nobody_else_comes_to_fails_after_the_timeout() {
    let port = free_local_port().unwrap();
    let started = Instant::now();
    let err = Group::join(rendezvous(port, 0, 2, Duration::from_secs(2)), Device::Cpu).unwrap_err();
    assert!(matches!(err, GroupError::Rendezvous { rank: 0, world: 2, .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn a_rank_that_leaves_is_named_by_the_survivor() {
    let results = on_ranks(2, Duration::from_secs(60), |group| {
        let t = Tensor::from_slice(&[1.0f32]);
        group.all_reduce(&t, ReduceOp::Sum, "first all-reduce").unwrap();
        if group.rank() == 1 {
            drop(group); // closes its connections, as a killed process's kernel would
            return None;
        }
        let started = Instant::now();
        let err = group.all_reduce(&t, ReduceOp::Sum, "gradient all-reduce").unwrap_err();
        Some((err, started.elapsed()))
    });
    let (err, took) = results[0].as_ref().unwrap().clone().unwrap();
    assert_eq!(err, GroupError::PeerLost { ranks: vec![1], what: "gradient all-reduce" });
    assert!(err.to_string().starts_with("rank 1 stopped answering during the gradient"), "{err}");
    // Found by the closed connection and the roll call, not by the 60 s timeout.
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn a_rank_that_fails_is_reported_with_its_own_error() {
    let results = on_ranks(2, Duration::from_secs(60), |group| {
        let t = Tensor::from_slice(&[1.0f32]);
        if group.rank() == 1 {
            group.publish_error("data_src/aligned/00003_0.jpg: not a face file");
            drop(group);
            return None;
        }
        Some(group.all_reduce(&t, ReduceOp::Sum, "gradient all-reduce").unwrap_err())
    });
    let err = results[0].as_ref().unwrap().clone().unwrap();
    assert_eq!(
        err.to_string(),
        "rank 1 stopped: data_src/aligned/00003_0.jpg: not a face file",
        "{err:?}"
    );
}
