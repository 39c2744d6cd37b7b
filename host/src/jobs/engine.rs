//! The worker pool: claims jobs, runs their handler on a blocking thread,
//! renews leases, relays cancellation, records the end.
