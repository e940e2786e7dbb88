//! Pagination strategies, each a small state machine tested without a network.

pub mod budget;
pub mod link;
pub mod page_number;

pub use budget::PageBudget;
pub use link::{parse_link_header, Links};
pub use page_number::{incomplete_listing, with_query_param, PageInfo, PageNumberPaging, Step};
