//! The relay side of Braid, including the Conflux exit. Nothing is
//! implemented here yet.
