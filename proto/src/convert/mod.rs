//! Conversions between the prost-generated wire types and the domain types, in both
//! directions. Everything arriving from the wire is validated here, once.

mod execution;
mod models;
mod sweep;
mod tracking;

pub(crate) use execution::parse_digest;
pub(crate) use tracking::{parse_run_id, view_type_from_request, view_type_to_wire};
