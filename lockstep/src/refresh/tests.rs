//! The refresher's tests: the schedule's phase and backoff. (Conditional
//! fetches are `memory_flips::a_registry_fetches_conditionally_and_misses_no_change`;
//! the rate of outage warnings is the engine's state's: `engine::tests`.)

use super::*;

#[test]
fn phases_are_one_tick_apart_and_in_the_future() {
    assert_eq!(next_phase(10_000, 1_000, 300), 10_300);
    assert_eq!(next_phase(10_300, 1_000, 300), 11_300);
    assert_eq!(next_phase(10_299, 1_000, 300), 10_300);
    for now in 0..3_000 {
        let next = next_phase(now, 1_000, 123);
        assert!(next > now && next <= now + 1_000 && next % 1_000 == 123);
    }
}

#[test]
fn backoff_grows_and_stays_under_a_tick() {
    for failures in 1..40 {
        for _ in 0..50 {
            let b = backoff(failures, 1_000);
            assert!((31..=500).contains(&b), "{failures}: {b}");
        }
    }
    assert!(backoff(1, 600_000) <= 250);
    assert!(backoff(30, 600_000) >= 150_000);
}
