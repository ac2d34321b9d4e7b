//! drover's wire contract: the gRPC services between the CLI, the scheduler and the
//! workers, the domain types they carry, and the conversions between the two.
//!
//! This is the only crate that knows prost types: everything outside speaks [`domain`]
//! types, serves them through [`service::Tracking`] and calls them through [`client::Client`].

pub mod client;
mod convert;
pub mod domain;
pub mod error;
pub mod execution;
pub mod lineage;
pub mod models;
pub mod service;
pub mod sweep;
pub mod tags;
pub mod tls;
pub mod validate;

#[allow(clippy::all, missing_docs, unreachable_pub)]
mod pb {
    tonic::include_proto!("drover.v1");
}

pub use client::Client;
pub use error::ApiError;
