//! The protocol's values, validated at the boundary: updates and their SSE bytes, topics and
//! selectors, publish forms.

pub mod form;
pub mod publication;
pub mod sse;
pub mod template;
pub mod text;
pub mod topic;
pub mod update;
pub mod url_pattern;
