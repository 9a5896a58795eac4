//! A relay's server descriptor (dir-spec §2.1.1): what it says about
//! itself, building and signing the document, and when to upload it.
//! Sans-IO: keys and the time are passed in; the relay driver reads keys
//! from disk and posts the text to the authorities.
//!
//! - [`info`]: the descriptor's fields and their checks.
//! - [`policy`]: the exit policy in torrc's syntax.
//! - [`build`]: encoding and signing, in C-tor's item order.
//! - [`schedule`]: when to rebuild and upload, per-authority retries.
//! - [`error`]: why a descriptor could not be built.

pub mod build;
pub mod error;
pub mod info;
pub mod policy;
pub mod schedule;

#[cfg(test)]
mod tests;

pub use build::{
    DescriptorKeys, MAX_DESCRIPTOR_LEN, NTOR_CROSSCERT_LIFETIME, ServerDescriptor, build_descriptor,
};
pub use error::DescriptorError;
pub use info::{Bandwidth, DescriptorInfo, braid_platform};
pub use policy::{ExitPolicy, ExitRule};
pub use schedule::{PublishSchedule, ScheduleConfig, Upload, UploadOutcome};
