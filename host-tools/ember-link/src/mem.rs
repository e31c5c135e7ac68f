//! An in-memory serial line: the host end is a [`crate::Transport`], the device end speaks
//! `embedded_io`, so a `ember_firmware::Device` can run in a thread of a test.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::Transport;

#[derive(Debug, Default)]
struct Queue {
    bytes: Mutex<(VecDeque<u8>, bool)>,
    ready: Condvar,
}

impl Queue {
    fn push(&self, data: &[u8]) {
        let mut guard = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.extend(data);
        self.ready.notify_all();
    }

    fn close(&self) {
        let mut guard = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        guard.1 = true;
        self.ready.notify_all();
    }

    /// Waits up to `timeout` (forever if `None`) for bytes; `Ok(0)` means closed.
    fn pop(&self, out: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut guard = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if !guard.0.is_empty() {
                let n = out.len().min(guard.0.len());
                for (dst, src) in out.iter_mut().zip(guard.0.drain(..n)) {
                    *dst = src;
                }
                return Ok(n);
            }
            if guard.1 {
                return Ok(0);
            }
            guard = match deadline {
                None => self.ready.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
                    }
                    self.ready
                        .wait_timeout(guard, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// The host side of an in-memory line.
#[derive(Debug)]
pub struct HostEnd {
    to_device: Arc<Queue>,
    from_device: Arc<Queue>,
    timeout: Duration,
}

/// The device side of an in-memory line.
#[derive(Debug)]
pub struct DeviceEnd {
    to_host: Arc<Queue>,
    from_host: Arc<Queue>,
}

/// A connected pair. Dropping the host end makes the device end's reads fail, which ends a
/// device thread's loop.
pub fn pipe() -> (HostEnd, DeviceEnd) {
    let down = Arc::new(Queue::default());
    let up = Arc::new(Queue::default());
    (
        HostEnd {
            to_device: down.clone(),
            from_device: up.clone(),
            timeout: Duration::from_secs(1),
        },
        DeviceEnd {
            to_host: up,
            from_host: down,
        },
    )
}

impl Drop for HostEnd {
    fn drop(&mut self) {
        self.to_device.close();
    }
}

impl io::Read for HostEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.from_device.pop(buf, Some(self.timeout))
    }
}

impl io::Write for HostEnd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.to_device.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for HostEnd {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }
}

/// The host hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl embedded_io::Error for Closed {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::BrokenPipe
    }
}

impl embedded_io::ErrorType for DeviceEnd {
    type Error = Closed;
}

impl embedded_io::Read for DeviceEnd {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Closed> {
        match self.from_host.pop(buf, None) {
            Ok(0) | Err(_) if !buf.is_empty() => Err(Closed),
            Ok(n) => Ok(n),
            Err(_) => Err(Closed),
        }
    }
}

impl embedded_io::Write for DeviceEnd {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Closed> {
        self.to_host.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Closed> {
        Ok(())
    }
}
