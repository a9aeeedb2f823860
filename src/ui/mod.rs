//! What the person at the terminal sees: the progress reporter, the live display and the
//! analytics text.

pub mod progress;
