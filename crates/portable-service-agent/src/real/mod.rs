//! The real host: the agent's `Host` on a running system, as root. Files by plain system
//! calls (`files`), the update lock by `flock(2)` (`lock`), portabled's attachments read from
//! its drop-ins (`dropins`), health commands in a process group of their own (`check`).

pub mod check;
pub mod dropins;
pub mod files;
pub mod lock;
