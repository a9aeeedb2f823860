//! Text for people: numbers as people read them (`units`), counted nouns (`plural`) and
//! text from outside made inert before it reaches a terminal (`sanitize`). Every layer
//! uses these, so they sit below all.

pub mod plural;
pub mod sanitize;
pub mod units;
