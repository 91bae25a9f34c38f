//! The pure parts of `confab-bench audio`, each with unit tests: the chirp stimulus and its
//! detection (`chirp`), CPU time from `/proc` (`cpu`), PESQ
//! input preparation and scoring (`pesq`), the network impairment's packet fates (`impair`),
//! and percentiles and target lines (`report`). The binary wires them to devices, processes
//! and the network.

pub mod chirp;
pub mod cpu;
pub mod impair;
pub mod pesq;
pub mod report;
