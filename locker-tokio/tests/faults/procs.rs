//! The processes a fault scenario starts: killed when dropped, signalled by
//! spawning `kill` (no unsafe code), and waited on with a bound.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A signal the suite sends to its processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGSTOP: the process freezes, its sockets stay open.
    Stop,
    /// SIGCONT: it runs again.
    Cont,
    /// SIGTERM: asks it to end.
    Term,
}

impl Signal {
    fn flag(self) -> &'static str {
        match self {
            Signal::Stop => "-STOP",
            Signal::Cont => "-CONT",
            Signal::Term => "-TERM",
        }
    }
}

/// A child process, killed (SIGKILL) and reaped when dropped, so a failing
/// scenario leaves nothing running.
pub struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `command`; `name` is used in messages.
    pub fn spawn(name: impl Into<String>, mut command: Command) -> std::io::Result<Proc> {
        let child = command.spawn()?;
        Ok(Proc {
            name: name.into(),
            child,
            status: None,
        })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child itself, for its pipes.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` with the `kill` program; an error if it could not be
    /// delivered (the process already gone, say).
    pub fn signal(&mut self, signal: Signal) -> Result<(), String> {
        if let Some(status) = self.exited() {
            return Err(format!("{} already exited ({status})", self.name));
        }
        let out = Command::new("kill")
            .arg(signal.flag())
            .arg(self.child.id().to_string())
            .output()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "kill {} {} ({}): {}",
                signal.flag(),
                self.child.id(),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// SIGKILL, as `kill -9`, and reaps it.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.status = Some(status);
            }
        }
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `bound` for it to exit.
    pub async fn exit_within(&mut self, bound: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + bound;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process.
        self.kill();
    }
}
