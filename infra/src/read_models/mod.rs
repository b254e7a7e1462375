//! Read models (DESIGN §6), one module per bounded context, each holding its views, schema and
//! queries whatever store it uses; shared by its projector and by query-api.
//!
//! - [`consistency`]: read-your-writes: the consistency token of a write, and waiting until a
//!   read model has applied it.

pub mod consistency;
