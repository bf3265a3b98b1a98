//! Flipping: switching a registry's values at their instants.
//!
//! The *flipper*, an OS thread per registry, sleeps until the next entry's
//! instant by the registry's clock and then publishes the values of that
//! instant, all fields at once. It wakes a little early and spins the last
//! few hundred microseconds, so a flip lands within microseconds after its
//! instant and never before it.
//!
//! On a busy machine a thread that wakes waits for a core like any other,
//! while the threads that serve requests go on reading the old value: the
//! flipper therefore asks for a real-time priority (`SCHED_FIFO` 1) where
//! the process may have one, so that it runs the moment it wakes. It sleeps
//! between instants and works for microseconds at each, so it takes nothing
//! from the machine. Where the process may not ([`FlipperPriority::Normal`]:
//! no `CAP_SYS_NICE` and `RLIMIT_RTPRIO` 0, or another system), it runs at
//! the ordinary priority and says so in [`Status::flipper`].
//!
//! [`Status::flipper`]: crate::Status::flipper

use std::sync::Arc;
use std::time::Duration;

use crate::clock::UnixNanos;
use crate::contract::Fields;
use crate::engine::Engine;
use crate::status::FlipperPriority;

/// How long before an instant the flipper stops sleeping and starts spinning.
const SPIN: Duration = Duration::from_micros(300);

/// The longest the flipper sleeps without looking at the clock again.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// Publishes the values of now.
pub(crate) fn flip_now<S: Fields>(engine: &Engine<S>) {
    let now = engine.now();
    engine.flip(&mut engine.lock(), now);
}

/// Starts the flipper thread of `engine`, at a real-time priority if
/// `realtime` and the process may have one.
pub(crate) fn spawn_flipper<S: Fields>(engine: Arc<Engine<S>>, realtime: bool) {
    let namespace = S::DEF.namespace;
    let spawned = std::thread::Builder::new()
        .name(format!("lockstep-flip-{namespace}"))
        .spawn(move || {
            let priority = if realtime {
                raise_priority()
            } else {
                FlipperPriority::Normal
            };
            if priority == FlipperPriority::Normal && realtime {
                tracing::info!(
                    namespace,
                    "lockstep: the flipper runs at the ordinary priority (this process may not \
                     have a real-time one: grant CAP_SYS_NICE or an RLIMIT_RTPRIO of 1 or more); \
                     on a busy machine a flip can wait for a core"
                );
            }
            engine.lock().flipper_started(priority);
            engine.set_flipper(std::thread::current());
            flipper(&engine)
        });
    if let Err(e) = spawned {
        tracing::error!(namespace, error = %e, "lockstep: cannot start the flipper thread");
    }
}

/// The flipper thread: publish what is due, sleep until the next instant,
/// publish, repeat.
///
/// Under the lock it publishes what is due and the next instant's values
/// are made ([`Engine::prepare_next`]); then, without the lock, it sleeps towards
/// that instant (at most [`MAX_SLEEP`] at a time, following the values a
/// fetch makes anew), spins the last [`SPIN`], publishes them, and takes
/// the lock again only once they are out, or when a fetch was applied
/// ([`Engine::wake_flipper`]) to publish what it changed now. So a thread
/// holding the lock near an instant (a `status()` call preempted on a busy
/// machine, a fetch being applied) never holds the flip back.
fn flipper<S: Fields>(engine: &Engine<S>) {
    loop {
        {
            let mut state = engine.lock();
            let now = engine.clock().now();
            engine.flip(&mut state, now.as_millis());
        }
        approach(engine);
    }
}

/// Sleeps towards the next prepared instant without the lock, spins,
/// publishes its values and records the flip; returns then, or as soon as
/// a fetch was applied.
fn approach<S: Fields>(engine: &Engine<S>) {
    loop {
        if engine.take_fetched() {
            return;
        }
        let Some(next) = engine.prepared() else {
            std::thread::park_timeout(MAX_SLEEP);
            continue;
        };
        let until = UnixNanos::from_millis(next.at);
        let now = engine.clock().now();
        if until.nanos_since(now) > SPIN.as_nanos() as i64 {
            let sleep = until.duration_since(now) - SPIN;
            std::thread::park_timeout(sleep.min(MAX_SLEEP));
            continue;
        }
        // Spin without yielding: a thread that just woke keeps its core for
        // these few hundred microseconds, where yielding on a busy machine
        // hands it to another thread for a whole time slice (about 3 ms
        // late, measured).
        while engine.clock().now() < until {
            std::hint::spin_loop();
        }
        // The values made last for this instant: a fetch applied meanwhile
        // made them anew.
        if let Some(next) = engine.prepared()
            && next.at <= until.as_millis()
        {
            engine.publish_prepared(&next);
        }
        return;
    }
}

/// Asks for `SCHED_FIFO` priority 1 for the calling thread: above every
/// ordinary thread, below every other real-time one.
#[cfg(unix)]
fn raise_priority() -> FlipperPriority {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `pthread_self` is always a valid handle for the calling
    // thread, and `param` is a valid `sched_param` that outlives the call.
    let refused =
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if refused == 0 {
        FlipperPriority::Realtime
    } else {
        FlipperPriority::Normal
    }
}

/// No real-time priority outside Unix.
#[cfg(not(unix))]
fn raise_priority() -> FlipperPriority {
    FlipperPriority::Normal
}

#[cfg(test)]
mod tests {
    use crate::lockstep;
    use crate::status::FlipperPriority;
    use crate::store::{MemoryStore, Store, StoredEntry};

    #[lockstep(tick = "1s", store = "memory", namespace = "zflip_realtime")]
    struct Realtime {
        value: u8,
    }

    #[lockstep(tick = "1s", store = "memory", namespace = "yflip_normal")]
    struct Normal {
        value: u8,
    }

    #[lockstep(tick = "1s", store = "memory", namespace = "flip_locked")]
    struct Locked {
        value: u8,
    }

    #[lockstep(tick = "1s", store = "memory", namespace = "flip_applying")]
    struct Applying {
        value: u8,
    }

    /// A fetch applied under the lock near an instant by a thread that then
    /// keeps the lock (a refresher preempted on a busy machine) does not
    /// hold the flip back either: the values of the instant are made anew
    /// under the lock, and the flipper publishes those.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_flip_does_not_wait_for_a_fetch_being_applied() {
        APPLYING
            .builder()
            .store(MemoryStore::new())
            .start()
            .await
            .unwrap();
        let at = APPLYING.set(Applying::VALUE, 9).await.unwrap();
        APPLYING.refresh().await.unwrap();
        let at_ns = at.timestamp_nanos_opt().unwrap();
        let now_ns = || chrono::Utc::now().timestamp_nanos_opt().unwrap();
        let engine = APPLYING.engine().clone();
        // A fetch that changes the timelines: the store's entries, and one
        // more an hour after the instant.
        let mut fetched = engine
            .store()
            .fetch("flip_applying", engine.keys())
            .await
            .unwrap();
        fetched
            .fields
            .entry("value".into())
            .or_default()
            .push(StoredEntry {
                at: at_ns / 1_000_000 + 3_600_000,
                value: Ok("10".into()),
                origin: None,
            });
        tokio::time::sleep(
            (at - chrono::Utc::now() - chrono::TimeDelta::milliseconds(100))
                .to_std()
                .unwrap_or_default(),
        )
        .await;
        let held = std::thread::spawn(move || {
            let mut state = engine.lock();
            // Applying that fetch, as the refresher does, and then keeping
            // the lock.
            let now = at_ns / 1_000_000 - 100;
            let generation = state.timelines().generation();
            state.answered::<Applying>(fetched, None, now);
            assert_eq!(state.timelines().generation(), generation + 1);
            engine.prepare_next(&state, now);
            loop {
                let value = APPLYING.value();
                let ended = now_ns();
                if value == 9 {
                    return ended;
                }
                assert!(
                    ended < at_ns + 30_000_000_000,
                    "the value never switched while a fetch being applied held the lock"
                );
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        });
        let seen = held.join().unwrap();
        assert!(seen >= at_ns, "switched {} ns early", at_ns - seen);
    }

    /// A thread that holds the engine's lock across an instant (a
    /// `status()` call preempted on a busy machine, a fetch being applied)
    /// does not hold the flip back: the flipper made the instant's values
    /// before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_flip_does_not_wait_for_a_thread_holding_the_engines_lock() {
        LOCKED
            .builder()
            .store(MemoryStore::new())
            .start()
            .await
            .unwrap();
        let at = LOCKED.set(Locked::VALUE, 7).await.unwrap();
        LOCKED.refresh().await.unwrap();
        let at_ns = at.timestamp_nanos_opt().unwrap();
        let now_ns = || chrono::Utc::now().timestamp_nanos_opt().unwrap();
        tokio::time::sleep(
            (at - chrono::Utc::now() - chrono::TimeDelta::milliseconds(100))
                .to_std()
                .unwrap_or_default(),
        )
        .await;
        let engine = LOCKED.engine().clone();
        let held = std::thread::spawn(move || {
            let _state = engine.lock();
            loop {
                let value = LOCKED.value();
                let ended = now_ns();
                if value == 7 {
                    return ended;
                }
                // Generous: only a flip that waits for the lock never comes.
                assert!(
                    ended < at_ns + 30_000_000_000,
                    "the value never switched while a thread held the engine's lock"
                );
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        });
        let seen = held.join().unwrap();
        assert!(seen >= at_ns, "switched {} ns early", at_ns - seen);
        // The flip is recorded once the lock is free.
        let since = std::time::Instant::now();
        while LOCKED.status().flips == 0 {
            assert!(
                since.elapsed() < std::time::Duration::from_secs(60),
                "no flip recorded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(LOCKED.status().flips, 1);
    }

    /// Whether this process may give a thread a real-time priority: a
    /// thread of its own asks.
    #[cfg(unix)]
    fn may_raise() -> bool {
        std::thread::spawn(|| super::raise_priority() == FlipperPriority::Realtime)
            .join()
            .unwrap()
    }

    /// The scheduling policy of this process's thread named `name`, from
    /// `/proc` (field 41 of `stat`: 0 ordinary, 1 `SCHED_FIFO`).
    #[cfg(target_os = "linux")]
    fn policy_of_thread(name: &str) -> Option<u32> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        tasks.flatten().find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // The fields after the parenthesised name, which may hold spaces.
            let after = &stat[stat.rfind(')')? + 2..];
            after.split(' ').nth(38)?.parse().ok()
        })
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_flipper_runs_at_a_real_time_priority_where_the_process_may_have_one() {
        REALTIME
            .builder()
            .store(MemoryStore::new())
            .start()
            .await
            .unwrap();
        let expected = if may_raise() {
            FlipperPriority::Realtime
        } else {
            FlipperPriority::Normal
        };
        // The flipper records its priority as it starts.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while REALTIME.status().flipper == FlipperPriority::NotStarted {
            assert!(
                std::time::Instant::now() < deadline,
                "the flipper never said how it is scheduled"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(REALTIME.status().flipper, expected);
        // `lockstep-flip-` and the namespace, cut to the 15 bytes a
        // thread's name keeps.
        let policy = policy_of_thread("lockstep-flip-z").expect("the flipper thread");
        assert_eq!(policy, u32::from(expected == FlipperPriority::Realtime));

        NORMAL
            .builder()
            .store(MemoryStore::new())
            .realtime_flips(false)
            .start()
            .await
            .unwrap();
        while NORMAL.status().flipper == FlipperPriority::NotStarted {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(NORMAL.status().flipper, FlipperPriority::Normal);
        assert!(
            NORMAL
                .status()
                .to_string()
                .contains("flipper at the ordinary priority")
        );
    }
}
