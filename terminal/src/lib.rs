//! openMosix's full-screen terminal tools, rebuilt as clients of
//! `openmosixd`: `mosmon` (the nodes as live bars, [`mosmon`]) and `mtop`
//! (top with the openMosix columns and actions, [`mtop`]). A collection
//! task feeds each tool over a channel ([`feed`]); a small trait and loop
//! run them full screen, or as plain text where the terminal cannot
//! ([`screen`]).

pub mod feed;
pub mod mosmon;
pub mod mtop;
pub mod screen;
