//! Support for lockstep's own integration tests and examples: not part of
//! lockstep's API.
