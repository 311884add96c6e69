//! The data-management API: what an operator does to the data beyond
//! writing and querying it (Arc's routes and shapes, so its clients work
//! unchanged).
//!
//! | route | role | what |
//! |---|---|---|
//! | `GET /api/v1/measurements?database=` | read | every table with its files, bytes and rows ([`measurements`]) |
//! | `POST /api/v1/delete` | delete (admin) | delete the rows matching a `where` clause, or count them ([`delete`]) |
//! | `GET /api/v1/delete/config` | read | whether deletes are on and the confirmation threshold |

pub mod delete;
pub mod measurements;
